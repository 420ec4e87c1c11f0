"""Held-out concepts for personalization: objects the model never saw, with reference renders.

Why: a personalization method must show it can add something new. Each concept is a new shape, or a
new two-tone pattern on a known shape; the training sampler draws only vocab.TRAIN_SHAPES and
TRAIN_PATTERNS, so none of these is ever rendered for training. For each concept we write 5 reference
renders (varied position, size, background) with masks, and 3 renders of the concept in context (next
to another object) for multi-reference methods.

    python -m toyworld.concepts --out assets/toyworld/concepts
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .vocab import COLORS, POSITIONS, TRAIN_PATTERNS, TRAIN_SHAPES
from .world import Background, ObjectSpec, SceneSpec, make_object, render


@dataclass(frozen=True)
class Concept:
    name: str
    shape: str
    color: str
    pattern: str
    color2: str | None = None
    description: str = ""


HELD_OUT_CONCEPTS: tuple[Concept, ...] = (
    Concept("orange_crescent", "crescent", "orange", "plain", None, "a new shape: a crescent moon"),
    Concept("twotone_star", "star", "yellow", "twotone", "blue", "a new pattern on a known shape: top half "
            "yellow, bottom half blue"),
    Concept("dotted_hexagon", "hexagon", "purple", "dotted", None, "a new shape with a known pattern"),
)

N_REFERENCES = 5
N_CONTEXT = 3
_REF_POSITIONS = ("in the center", "on the left", "on the right", "at the top", "at the bottom")
_CONTEXT_PAIRS = (("on the left", "on the right"), ("at the top left", "at the bottom right"),
                  ("on the right", "at the bottom left"))


def _concept_object(c: Concept, size: str, position: str, rng: np.random.Generator) -> ObjectSpec:
    return make_object(c.shape, c.color, c.pattern, size, position, rng, c.color2)


def reference_scenes(c: Concept, seed: int) -> list[SceneSpec]:
    """The concept alone: varied position, size and background."""
    rng = np.random.default_rng(seed)
    backgrounds = (Background("plain", "gray"), Background("plain", "white"), Background("gradient", "beige", "gray"),
                   Background("noise", "gray", None, seed), Background("plain", "black"))
    sizes = ("", "large", "", "small", "")
    return [SceneSpec((_concept_object(c, sizes[i], _REF_POSITIONS[i], rng),), backgrounds[i])
            for i in range(N_REFERENCES)]


def context_scenes(c: Concept, seed: int) -> list[SceneSpec]:
    """The concept next to an ordinary object (a training shape and pattern, a different colour)."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for i in range(N_CONTEXT):
        mine, other = _CONTEXT_PAIRS[i]
        colour = str(rng.choice([k for k in COLORS if k not in (c.color, c.color2)]))
        companion = make_object(str(rng.choice(TRAIN_SHAPES)), colour, str(rng.choice(TRAIN_PATTERNS)), "",
                                other, rng)
        out.append(SceneSpec((_concept_object(c, "", mine, rng), companion), Background("plain", "gray")))
    return out


def write_concept_assets(out_dir: Path, seed: int = 1234) -> list[Path]:
    """Write PNG renders, concept masks (white = concept) and one concept.json per concept."""
    written = []
    for k, c in enumerate(HELD_OUT_CONCEPTS):
        folder = out_dir / c.name
        folder.mkdir(parents=True, exist_ok=True)
        entries = []
        for kind, scenes in (("reference", reference_scenes(c, seed + 10 * k)),
                             ("context", context_scenes(c, seed + 10 * k))):
            for i, scene in enumerate(scenes):
                r = render(scene)
                stem = f"{kind}_{i}"
                Image.fromarray(r.image).save(folder / f"{stem}.png")
                Image.fromarray(r.objects[0].mask.astype(np.uint8) * 255).save(folder / f"{stem}_mask.png")
                obj = r.objects[0]
                entries.append({"image": f"{stem}.png", "mask": f"{stem}_mask.png", "kind": kind,
                                "box": list(obj.box), "position": obj.spec.position, "size": obj.spec.size or "medium",
                                "others": [o.spec.attributes() for o in r.objects[1:]]})
        meta = {**asdict(c), "positions": list(POSITIONS), "renders": entries}
        (folder / "concept.json").write_text(json.dumps(meta, indent=1))
        written.append(folder)
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets/toyworld/concepts")
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)
    for folder in write_concept_assets(args.out, args.seed):
        print(folder)


if __name__ == "__main__":
    main()
