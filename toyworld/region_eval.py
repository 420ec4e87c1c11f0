"""Measure RAG's regional binding and repainting on toyworld, each against the same seeds without the method.

- binding: two or three objects, each given its own region (a box around a grid anchor: left and right, or
  the diagonal) whose prompt names its colour, pattern and shape; the global prompt says the whole scene with positions.
  Success = every object is detected inside its region with its colour, pattern and shape. Baseline = the
  same global prompt alone (the scene said in one prompt), same seed.
- repaint: a two-object scene is generated, then its right half is repainted to a new object. Success = the
  new object is detected inside the region with all three attributes. Baseline = the scene regenerated from
  the same seed with the new object said in the global prompt instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .detector import Detection, detect
from .method_eval import Rates
from .vocab import COLORS, TRAIN_PATTERNS, TRAIN_SHAPES

SIZE = 64  # toyworld's native size
BACKGROUND = "gray background"
BOX = 0.375  # a region's side: 24 px, a medium object (19 px) with margin, centred on a grid anchor
LAYOUTS = {
    2: (((0.0625, 0.3125, BOX, BOX), "on the left"), ((0.5625, 0.3125, BOX, BOX), "on the right")),
    3: (  # the diagonal, so medium objects never touch; neighbouring regions overlap by a third
        ((0.0625, 0.0625, BOX, BOX), "at the top left"),
        ((0.3125, 0.3125, BOX, BOX), "in the center"),
        ((0.5625, 0.5625, BOX, BOX), "at the bottom right"),
    ),
}


@dataclass(frozen=True)
class Thing:
    color: str
    pattern: str
    shape: str

    @property
    def phrase(self) -> str:
        words = [self.color] + ([self.pattern] if self.pattern != "plain" else []) + [self.shape]
        return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


def scene(count: int, index: int) -> list[Thing]:
    """Scene `index` of `count` objects: distinct colours and shapes, patterns cycled, all deterministic."""
    rng = np.random.default_rng(1000 * count + index)
    colors = rng.choice(list(COLORS), size=count, replace=False)
    shapes = rng.choice(list(TRAIN_SHAPES), size=count, replace=False)
    patterns = rng.choice(list(TRAIN_PATTERNS), size=count, replace=True)
    return [Thing(str(c), str(p), str(s)) for c, p, s in zip(colors, patterns, shapes, strict=True)]


def global_prompt(things: list[Thing], positions: list[str]) -> str:
    phrases = [f"{t.phrase} {p}" for t, p in zip(things, positions, strict=True)]
    joined = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{joined}, {BACKGROUND}"


def found_in(detections: tuple[Detection, ...], thing: Thing, box: tuple[float, float, float, float]) -> bool:
    """Whether a detection centred inside `box` (fractions) has the thing's colour, pattern and shape."""
    x, y, w, h = (v * SIZE for v in box)
    return any(
        x <= d.center[0] < x + w and y <= d.center[1] < y + h
        and (d.color, d.pattern, d.shape) == (thing.color, thing.pattern, thing.shape)
        for d in detections
    )  # fmt: skip


def all_found(image: Image.Image, things: list[Thing], boxes: list[tuple[float, float, float, float]]) -> bool:
    detections = detect(image).objects
    return all(found_in(detections, t, b) for t, b in zip(things, boxes, strict=True))


def _generation(steps: int) -> dict:
    return {"num_inference_steps": steps, "guidance_scale": 5.0, "width": SIZE, "height": SIZE}


def region_binding(backbone, count: int, scenes: int, seeds: int = 1, steps: int = 25, **method) -> Rates:
    """Share of images with every object in its region with all its attributes: RAG vs the global prompt."""
    from pipelines.generate import generate
    from pipelines.regional import regional
    from pipelines.regions import Region

    boxes = [b for b, _ in LAYOUTS[count]]
    positions = [p for _, p in LAYOUTS[count]]
    hits, total = np.zeros(2), 0
    for index in range(scenes):
        things = scene(count, index)
        prompt = global_prompt(things, positions)
        regions = [Region(t.phrase, box=b) for t, b in zip(things, boxes, strict=True)]
        for seed in range(seeds):
            out = regional(backbone, prompt, regions, generator=torch.Generator().manual_seed(seed),
                           **_generation(steps), **method)  # fmt: skip
            plain = generate(backbone, prompt, generator=torch.Generator().manual_seed(seed), **_generation(steps))
            hits += [all_found(out.images[0], things, boxes), all_found(plain.images[0], things, boxes)]
            total += 1
    return Rates.from_hits(hits, total)


def repaint_change(backbone, scenes: int, seeds: int = 1, steps: int = 25, **method) -> Rates:
    """Share of repaints whose region shows the new object with all its attributes: repaint vs regenerating."""
    from pipelines.generate import generate
    from pipelines.regions import Region
    from pipelines.repaint import repaint

    (left_box, left), (right_box, right) = LAYOUTS[2]
    hits, total = np.zeros(2), 0
    for index in range(scenes):
        old_left, old_right = scene(2, index)
        new = scene(2, index + 100)[1]
        if new == old_right:
            continue
        prompt = global_prompt([old_left, old_right], [left, right])
        edited = global_prompt([old_left, new], [left, right])
        for seed in range(seeds):
            original = generate(backbone, prompt, generator=torch.Generator().manual_seed(seed), **_generation(steps))
            out = repaint(
                backbone, original.images[0], Region(new.phrase, box=right_box), prompt=prompt,
                num_inference_steps=steps, guidance_scale=5.0, generator=torch.Generator().manual_seed(seed), **method,
            )  # fmt: skip
            plain = generate(backbone, edited, generator=torch.Generator().manual_seed(seed), **_generation(steps))
            hits += [all_found(out.images[0], [new], [right_box]), all_found(plain.images[0], [new], [right_box])]
            total += 1
    return Rates.from_hits(hits, total)
