"""Measure RAG's regional binding and repainting on toyworld, each against the same seeds without the method.

- binding: two or three objects, each given its own region (a box around a grid anchor: left and right, or
  the diagonal) whose prompt names its colour, pattern and shape; the global prompt says the whole scene with positions.
  Success = every object is detected inside its region with its colour, pattern and shape. Baseline = the
  same global prompt alone (the scene said in one prompt), same seed.
- `suffix` is appended to each region prompt ("{position}" becomes the region's position phrase), to measure
  region prompts written as toyworld captions of the region ("a red circle on the left, gray background").
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
BOX = 0.375  # a region's side: 24 px, a medium object (19 px) with margin, centred on its grid anchor
LAYOUTS = {  # (anchor as fractions of the image, the caption's position phrase) per object
    2: (((0.25, 0.5), "on the left"), ((0.75, 0.5), "on the right")),
    3: (((0.25, 0.25), "at the top left"), ((0.75, 0.25), "at the top right"), ((0.5, 0.75), "at the bottom")),
}


def boxes(count: int, side: float = BOX) -> list[tuple[float, float, float, float]]:
    """Each object's region: a square of `side` centred on its anchor, kept inside the image."""
    found = []
    for (cx, cy), _ in LAYOUTS[count]:
        x, y = min(max(cx - side / 2, 0.0), 1.0 - side), min(max(cy - side / 2, 0.0), 1.0 - side)
        found.append((x, y, side, side))
    return found


@dataclass(frozen=True)
class Thing:
    color: str
    pattern: str
    shape: str

    @property
    def phrase(self) -> str:
        words = [self.color] + ([self.pattern] if self.pattern != "plain" else []) + [self.shape]
        return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


# Stars are left out: the bundled model draws a patterned star alone as a circle (measured: 0 of 2 single-object
# prompts), so a star scene fails with or without the method and measures the model, not the binding.
SHAPES = tuple(s for s in TRAIN_SHAPES if s != "star")


def scene(count: int, index: int) -> list[Thing]:
    """Scene `index` of `count` objects: distinct colours and shapes, random patterns, all deterministic."""
    rng = np.random.default_rng(1000 * count + index)
    colors = rng.choice(list(COLORS), size=count, replace=False)
    shapes = rng.choice(list(SHAPES), size=count, replace=False)
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


def found_each(image: Image.Image, things: list[Thing], boxes: list[tuple[float, float, float, float]]) -> list[bool]:
    """Per thing: whether it is detected inside its region with its colour, pattern and shape."""
    detections = detect(image).objects
    return [found_in(detections, t, b) for t, b in zip(things, boxes, strict=True)]


def all_found(image: Image.Image, things: list[Thing], boxes: list[tuple[float, float, float, float]]) -> bool:
    return all(found_each(image, things, boxes))


@dataclass(frozen=True)
class BindingRates:
    """Images with every object right, and objects right, each with the method and without it."""

    images: Rates
    objects: Rates


def _generation(steps: int) -> dict:
    return {"num_inference_steps": steps, "guidance_scale": 5.0, "width": SIZE, "height": SIZE}


def region_binding(
    backbone, count: int, scenes: int, seeds: int = 1, steps: int = 25, side: float = BOX, suffix: str = "", **method
) -> BindingRates:
    """Share of images with every object in its region with all its attributes (and share of objects so
    placed): RAG vs the global prompt alone."""
    from pipelines.regional_prompting import regional
    from pipelines.regions import Region
    from pipelines.text_to_image import generate

    regions_at = boxes(count, side)
    positions = [p for _, p in LAYOUTS[count]]
    hits, objects, total = np.zeros(2), np.zeros(2), 0
    for index in range(scenes):
        things = scene(count, index)
        prompt = global_prompt(things, positions)
        regions = [Region(t.phrase + suffix.replace("{position}", p), box=b)
                   for t, b, p in zip(things, regions_at, positions, strict=True)]  # fmt: skip
        for seed in range(seeds):
            out = regional(backbone, prompt, regions, generator=torch.Generator().manual_seed(seed),
                           **_generation(steps), **method)  # fmt: skip
            plain = generate(backbone, prompt, generator=torch.Generator().manual_seed(seed), **_generation(steps))
            found = [found_each(out.images[0], things, regions_at), found_each(plain.images[0], things, regions_at)]
            hits += [all(f) for f in found]
            objects += [sum(f) for f in found]
            total += 1
    return BindingRates(Rates.from_hits(hits, total), Rates.from_hits(objects, total * count))


def repaint_change(
    backbone, scenes: int, seeds: int = 1, steps: int = 25, side: float = BOX, suffix: str = "", **method
) -> Rates:
    """Share of repaints whose region shows the new object with all its attributes: repaint vs regenerating."""
    from pipelines.regions import Region
    from pipelines.repainting import repaint
    from pipelines.text_to_image import generate

    (_, left), (_, right) = LAYOUTS[2]
    right_box = boxes(2, side)[1]
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
                backbone, original.images[0], Region(new.phrase + suffix.replace("{position}", right), box=right_box),
                prompt=prompt,
                num_inference_steps=steps, guidance_scale=5.0, generator=torch.Generator().manual_seed(seed), **method,
            )  # fmt: skip
            plain = generate(backbone, edited, generator=torch.Generator().manual_seed(seed), **_generation(steps))
            hits += [all_found(out.images[0], [new], [right_box]), all_found(plain.images[0], [new], [right_box])]
            total += 1
    return Rates.from_hits(hits, total)
