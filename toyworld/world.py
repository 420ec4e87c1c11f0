"""The procedural world: scene specifications, a sampler, and a renderer that returns ground truth.

Why: the studio needs a model whose outputs can be measured exactly. Every scene is a small set of
objects (shape, colour, pattern, size, position) on an achromatic background; rendering one yields the
image plus each object's mask, box and attributes. Sampling is a pure function of a numpy Generator,
and the default sampler never draws a held-out shape or pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .shapes import SUPERSAMPLE, pattern_shade, shape_mask
from .vocab import (
    BACKGROUND_COLORS,
    BACKGROUND_KINDS,
    COLORS,
    GRID,
    IMAGE_SIZE,
    POSITION_JITTER,
    POSITIONS,
    SHADE_FACTOR,
    SIZES,
    TRAIN_PATTERNS,
    TRAIN_SHAPES,
)


@dataclass(frozen=True)
class ObjectSpec:
    """One object. `position` is a caption phrase (see vocab.POSITIONS); `center` is in image pixels."""

    shape: str
    color: str
    pattern: str = "plain"
    size: str = ""
    position: str = "in the center"
    center: tuple[float, float] = (32.0, 32.0)
    color2: str | None = None  # second colour of the held-out "twotone" pattern

    @property
    def radius(self) -> float:
        return SIZES[self.size]

    def attributes(self) -> dict[str, str]:
        return {"shape": self.shape, "color": self.color, "pattern": self.pattern, "size": self.size or "medium",
                "position": self.position}


@dataclass(frozen=True)
class Background:
    """`kind` is plain, gradient (top `color` to bottom `color2`) or noise (texture around `color`)."""

    kind: str = "plain"
    color: str = "gray"
    color2: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[ObjectSpec, ...]
    background: Background = field(default_factory=Background)


@dataclass(frozen=True)
class ObjectTruth:
    spec: ObjectSpec
    mask: np.ndarray  # (H, W) bool, coverage >= 0.5
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


@dataclass(frozen=True)
class RenderedScene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: tuple[ObjectTruth, ...]
    spec: SceneSpec


def anchor(position: str) -> tuple[float, float]:
    """Pixel centre of a position phrase's grid cell."""
    gx, gy = POSITIONS[position]
    return float(GRID[gx]), float(GRID[gy])


def make_object(shape: str, color: str, pattern: str = "plain", size: str = "", position: str = "in the center",
                rng: np.random.Generator | None = None, color2: str | None = None) -> ObjectSpec:
    """An object at its position's anchor, jittered by up to POSITION_JITTER pixels when rng is given."""
    cx, cy = anchor(position)
    if rng is not None:
        cx += float(rng.uniform(-POSITION_JITTER, POSITION_JITTER))
        cy += float(rng.uniform(-POSITION_JITTER, POSITION_JITTER))
    return ObjectSpec(shape, color, pattern, size, position, (cx, cy), color2)


def _fits(objects: list[ObjectSpec], candidate: ObjectSpec) -> bool:
    """Objects must not touch: centre distance at least the sum of bounding radii plus a 2 px gap.

    1.25 x the half-size bounds every shape (a square's corner is at 1.22 r).
    """
    for other in objects:
        dist = np.hypot(candidate.center[0] - other.center[0], candidate.center[1] - other.center[1])
        if dist < 1.25 * (candidate.radius + other.radius) + 2.0:
            return False
    return True


def sample_background(rng: np.random.Generator) -> Background:
    kind = str(rng.choice(BACKGROUND_KINDS, p=[0.5, 0.25, 0.25]))
    names = list(BACKGROUND_COLORS)
    color = str(rng.choice(names))
    color2 = str(rng.choice([n for n in names if n != color])) if kind == "gradient" else None
    return Background(kind, color, color2, int(rng.integers(0, 2**31 - 1)))


def sample_scene(
    rng: np.random.Generator,
    n_objects: int | None = None,
    shapes: tuple[str, ...] = TRAIN_SHAPES,
    patterns: tuple[str, ...] = TRAIN_PATTERNS,
) -> SceneSpec:
    """A random scene with 1-3 non-touching objects. Defaults exclude every held-out concept."""
    if n_objects is None:
        n_objects = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    while True:
        objects: list[ObjectSpec] = []
        for _ in range(100):
            if len(objects) == n_objects:
                break
            size = str(rng.choice(["small", "", "large"] if n_objects == 1 else ["small", ""]))
            used = {o.position for o in objects}
            position = str(rng.choice([p for p in POSITIONS if p not in used]))
            candidate = make_object(str(rng.choice(shapes)), str(rng.choice(list(COLORS))),
                                    str(rng.choice(patterns)), size, position, rng)
            if _fits(objects, candidate):
                objects.append(candidate)
        if len(objects) == n_objects:
            return SceneSpec(tuple(objects), sample_background(rng))


def render_background(bg: Background, size: int = IMAGE_SIZE) -> np.ndarray:
    """(size, size, 3) float32 RGB in 0..255."""
    base = np.array(BACKGROUND_COLORS[bg.color], np.float32)
    if bg.kind == "plain":
        return np.broadcast_to(base, (size, size, 3)).copy()
    if bg.kind == "gradient":
        end = np.array(BACKGROUND_COLORS[bg.color2 or bg.color], np.float32)
        t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]  # (size, 1, 1) top to bottom
        return np.broadcast_to(base * (1 - t) + end * t, (size, size, 3)).copy()
    if bg.kind == "noise":
        rng = np.random.default_rng(bg.seed)
        coarse = rng.normal(0.0, 1.0, (size // 8, size // 8)).astype(np.float32)
        smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)  # (size, size)
        fine = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
        tex = 14.0 * smooth + 7.0 * fine  # achromatic: the same texture on every channel
        return np.clip(base + tex[..., None], 0, 255)
    raise ValueError(f"unknown background kind {bg.kind!r}")


def render(scene: SceneSpec, size: int = IMAGE_SIZE) -> RenderedScene:
    """Render a scene; objects are composited in order on a supersampled canvas and area-downsampled."""
    s = SUPERSAMPLE
    bg = render_background(scene.background, size)
    hi = np.repeat(np.repeat(bg, s, axis=0), s, axis=1)  # (canvas, canvas, 3)
    truths = []
    for obj in scene.objects:
        # Draw in a window around the object (aligned to the supersampling grid) rather than the full canvas.
        half = int(np.ceil(obj.radius + 2))
        gx0 = max(0, int(np.floor(obj.center[0])) - half)
        gy0 = max(0, int(np.floor(obj.center[1])) - half)
        gx1 = min(size, int(np.ceil(obj.center[0])) + half + 1)
        gy1 = min(size, int(np.ceil(obj.center[1])) + half + 1)
        win = max(gx1 - gx0, gy1 - gy0)
        gx1, gy1 = min(size, gx0 + win), min(size, gy0 + win)
        cx, cy = (obj.center[0] - gx0) * s, (obj.center[1] - gy0) * s
        cover_w = shape_mask(obj.shape, cx, cy, obj.radius * s, win * s)  # (win*s, win*s) bool
        shade_w = pattern_shade(obj.pattern, cx, cy, win * s, s)
        cover_w = cover_w[: (gy1 - gy0) * s, : (gx1 - gx0) * s]
        shade_w = shade_w[: (gy1 - gy0) * s, : (gx1 - gx0) * s]
        primary = np.array(COLORS[obj.color], np.float32)
        second = (np.array(COLORS[obj.color2], np.float32) if obj.pattern == "twotone" and obj.color2
                  else primary * SHADE_FACTOR)
        colour = np.where(shade_w[..., None], second, primary)  # (h*s, w*s, 3)
        region = hi[gy0 * s : gy1 * s, gx0 * s : gx1 * s]
        hi[gy0 * s : gy1 * s, gx0 * s : gx1 * s] = np.where(cover_w[..., None], colour, region)
        alpha_w = cv2.resize(cover_w.astype(np.float32), (gx1 - gx0, gy1 - gy0), interpolation=cv2.INTER_AREA)
        mask = np.zeros((size, size), bool)
        mask[gy0:gy1, gx0:gx1] = alpha_w >= 0.5
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else (0, 0, 0, 0)
        truths.append(ObjectTruth(obj, mask, box))
    image = cv2.resize(hi, (size, size), interpolation=cv2.INTER_AREA)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    # Later objects may cover earlier ones: keep each mask to what is visible.
    visible = []
    covered = np.zeros((size, size), bool)
    for t in reversed(truths):
        visible.append(ObjectTruth(t.spec, t.mask & ~covered, t.box))
        covered |= t.mask
    return RenderedScene(image, tuple(reversed(visible)), scene)


def render_seed(seed: int, **kwargs) -> RenderedScene:
    """Convenience: the scene drawn from `np.random.default_rng(seed)`, rendered."""
    return render(sample_scene(np.random.default_rng(seed), **kwargs))
