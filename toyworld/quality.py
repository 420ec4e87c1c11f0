"""The toyworld quality evaluation: prompts -> images -> detector -> accuracy table.

Why a `render(prompt, seed)` callable: the bench, the demo and the pinned test plug in whichever
generator they have (diffusers' StableDiffusionPipeline now, the studio's `pipelines.text_to_image` later)
and are scored by the same code. Prompt sets are drawn from the grammar with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .captions import background_phrase, join_objects, object_phrase
from .detector import build_templates, detect
from .metrics.attributes import AttributeTally
from .world import Background, sample_scene

Render = Callable[[str, int], Image.Image]

REPORTED = ("color", "shape", "pattern", "position", "size", "count", "all")


def prompt_set(n: int, n_objects: int, seed: int = 0) -> list[str]:
    """n canonical prompts (every position said, a plain background named) for n_objects-object scenes."""
    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(n):
        scene = sample_scene(rng, n_objects=n_objects)
        bg = Background("plain", str(rng.choice(["gray", "white", "black", "beige"])))
        prompts.append(join_objects([object_phrase(o) for o in scene.objects]) + ", " + background_phrase(bg))
    return prompts


@dataclass
class QualityReport:
    name: str
    prompts: list[str] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    tally: AttributeTally = field(default_factory=AttributeTally)
    clip_t: list[float] = field(default_factory=list)

    def accuracy(self) -> dict[str, float]:
        return self.tally.accuracy()

    def row(self) -> dict[str, float | str | int]:
        acc = self.accuracy()
        row: dict[str, float | str | int] = {"set": self.name, "n": len(self.prompts)}
        row.update({k: acc[k] for k in REPORTED if k in acc})
        if self.clip_t:
            row["clip_t"] = float(np.mean(self.clip_t))
        return row


def evaluate(render: Render, prompts: Sequence[str], seeds: Sequence[int], name: str = "eval",
             clip_t_scorer: Callable[[list[Image.Image], list[str]], Sequence[float]] | None = None,
             keep_images: bool = False, chunk: int = 16) -> QualityReport:
    """Render each prompt with its seed, detect, and tally attribute accuracy (and toy CLIP-T if given).

    If `render` has a `batch(prompts, seeds)` method it is used, `chunk` prompts at a time.
    """
    report = QualityReport(name)
    templates = build_templates()
    prompts, seeds = list(prompts), [int(s) for s in seeds]
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    batch = getattr(render, "batch", None)
    images: list[Image.Image] = []
    for i in range(0, len(prompts), chunk if batch else 1):
        p, s = prompts[i : i + chunk], seeds[i : i + chunk]
        images.extend(batch(p, s) if batch else [render(p[0], s[0])])
    for prompt, image in zip(prompts, images, strict=True):
        report.tally.add(prompt, detect(image, templates=templates))
        report.prompts.append(prompt)
    if clip_t_scorer is not None:
        report.clip_t = [float(x) for x in clip_t_scorer(images, list(prompts))]
    if keep_images:
        report.images = images
    return report


def format_table(reports: Sequence[QualityReport]) -> str:
    """A fixed-width table, one row per report; accuracies as percentages."""
    cols = ["set", "n", *REPORTED, "clip_t"]
    lines = [" ".join(f"{c:>10}" for c in cols)]
    for r in reports:
        row = r.row()
        cells = []
        for c in cols:
            v = row.get(c, "")
            if isinstance(v, float):
                cells.append(f"{v:>10.3f}" if c == "clip_t" else f"{100 * v:>9.1f}%")
            else:
                cells.append(f"{v!s:>10}")
        lines.append(" ".join(cells))
    return "\n".join(lines)
