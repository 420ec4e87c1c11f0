"""A deterministic OpenCV detector for toyworld images: background model, segmentation, attributes.

Why it works without learning: backgrounds are achromatic and object colours saturated (a pattern's
second tone is a darker shade of the same chromaticity), so saturation segments objects; chromaticity
names the colour; a bounding-box-normalised template match names the shape (shapes never rotate);
the layout of dark pixels inside the object names the pattern. The same code scores generated images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from .shapes import shape_mask
from .vocab import ALL_SHAPES, BACKGROUND_COLORS, COLORS, GRID, POSITIONS, SIZES, TRAIN_PATTERNS, TRAIN_SHAPES

SAT_MIN = 90  # HSV saturation (0..255) above which a pixel belongs to an object
VAL_MIN = 40
MIN_AREA = 30  # the smallest object (a small star) covers about 68 px; generated images have specks
TEMPLATE_RES = 32


@dataclass(frozen=True)
class Template:
    """A shape's canonical mask cropped to its box, plus where its anchor and radius sit in that box."""

    shape: str
    crop: np.ndarray  # (TEMPLATE_RES, TEMPLATE_RES) float coverage
    anchor_offset: tuple[float, float]  # (anchor - box centre) / box size, per axis
    extent: float  # box's larger side / radius


@dataclass(frozen=True)
class Detection:
    mask: np.ndarray  # (H, W) bool
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    center: tuple[float, float]  # estimated anchor, image pixels
    color: str
    shape: str
    pattern: str
    size: str
    position: str
    color2: str | None = None
    shape_scores: dict[str, float] = field(default_factory=dict)

    def attributes(self) -> dict[str, str]:
        return {"shape": self.shape, "color": self.color, "pattern": self.pattern, "size": self.size,
                "position": self.position}


@dataclass(frozen=True)
class BackgroundEstimate:
    kind: str  # plain | gradient | noise
    color: str
    color2: str | None
    model: np.ndarray  # (H, W, 3) float, the fitted smooth background


@dataclass(frozen=True)
class SceneDetection:
    objects: tuple[Detection, ...]
    background: BackgroundEstimate


def build_templates(shapes: tuple[str, ...] = ALL_SHAPES) -> dict[str, Template]:
    """Canonical templates, rendered with the world's own rasteriser (the generator is the oracle)."""
    out = {}
    canvas, r, c = 256, 100.0, 128.0
    for s in shapes:
        m = shape_mask(s, c, c, r, canvas)
        ys, xs = np.nonzero(m)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        crop = cv2.resize(m[y0:y1, x0:x1].astype(np.float32), (TEMPLATE_RES, TEMPLATE_RES),
                          interpolation=cv2.INTER_AREA)
        w, h = x1 - x0, y1 - y0
        offset = ((c - (x0 + x1) / 2) / w, (c - (y0 + y1) / 2) / h)
        out[s] = Template(s, crop, offset, max(w, h) / r)
    return out


def as_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a PIL image or array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    return np.asarray(image, dtype=np.uint8)[..., :3]


def foreground(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: saturated, not-too-dark pixels."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    return (hsv[..., 1] > SAT_MIN) & (hsv[..., 2] > VAL_MIN)


def _nearest(value: np.ndarray, names: tuple[str, ...], table) -> str:
    d = [np.linalg.norm(value - np.array(table[n], float)) for n in names]
    return names[int(np.argmin(d))]


def estimate_background(image: np.ndarray, fg: np.ndarray | None = None) -> BackgroundEstimate:
    """Fit a plane per channel to the non-object pixels: its residual says noise, its slope gradient."""
    h, w = image.shape[:2]
    if fg is None:
        fg = foreground(image)
    bg = ~cv2.dilate(fg.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if bg.sum() < 16:
        bg = np.ones((h, w), bool)
    yy, xx = np.mgrid[0:h, 0:w]
    design = np.stack([np.ones(bg.sum()), xx[bg] / w, yy[bg] / h], axis=1)  # (n, 3)
    values = image[bg].astype(float)  # (n, 3)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)  # (3, 3)
    full = np.stack([np.ones(h * w), xx.ravel() / w, yy.ravel() / h], axis=1) @ coef  # (h*w, 3)
    model = full.reshape(h, w, 3)
    residual = float(np.std(values - design @ coef))
    names = tuple(BACKGROUND_COLORS)
    top, bottom = coef[0] + 0.5 * coef[1], coef[0] + 0.5 * coef[1] + coef[2]
    if residual > 8.0:
        return BackgroundEstimate("noise", _nearest(values.mean(0), names, BACKGROUND_COLORS), None, model)
    if np.abs(coef[2]).max() > 40.0:
        return BackgroundEstimate("gradient", _nearest(top, names, BACKGROUND_COLORS),
                                  _nearest(bottom, names, BACKGROUND_COLORS), model)
    return BackgroundEstimate("plain", _nearest(values.mean(0), names, BACKGROUND_COLORS), None, model)


def _color_of(pixels: np.ndarray) -> tuple[str, np.ndarray]:
    """Name the colour of (n, 3) RGB pixels by the chromaticity of their brighter half."""
    v = pixels.max(axis=1)
    bright = pixels[v >= np.median(v)].astype(float)
    mean = bright.mean(axis=0)
    chroma = mean / max(mean.sum(), 1e-6)
    names = tuple(COLORS)
    palette = np.array([np.array(COLORS[n], float) / sum(COLORS[n]) for n in names])  # (8, 3) chromaticities
    return names[int(np.argmin(np.linalg.norm(palette - chroma, axis=1)))], chroma


def _pattern_maps(pattern: str, xs: np.ndarray, ys: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Expected shade (K, n) of `pattern` at pixel centres (xs, ys) for K candidate anchors (cx, cy)."""
    u = xs[None, :] + 0.5 - cx[:, None]
    v = ys[None, :] + 0.5 - cy[:, None]
    if pattern == "striped":
        return (np.floor(v / 3.0 + 0.5).astype(int) % 2 == 1).astype(float)
    if pattern == "checkered":
        return ((np.floor(u / 4.0) + np.floor(v / 4.0)).astype(int) % 2 == 1).astype(float)
    if pattern == "dotted":
        du = np.mod(u + 2.5, 5.0) - 2.5
        dv = np.mod(v + 2.5, 5.0) - 2.5
        return (du * du + dv * dv <= 1.45**2).astype(float)
    raise ValueError(pattern)


def _pattern_of(image: np.ndarray, mask: np.ndarray, center: tuple[float, float]) -> tuple[str, dict[str, float]]:
    """plain / striped / dotted / checkered by matched filtering of the object's darkness map.

    Each periodic pattern is synthesised at every phase within one period around the estimated anchor
    (the world anchors patterns at the object's centre), and the best agreement wins. Phase search makes
    it robust to anchor error and to a generator that draws the right pattern at a shifted phase.
    """
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    region = inner if inner.sum() >= 12 else mask
    v = image.max(axis=2).astype(float)  # (H, W) HSV value
    ref = np.percentile(v[region], 90)
    ys, xs = np.nonzero(region)
    dark = np.clip((ref - v[ys, xs]) / max(ref * 0.58, 1e-6), 0.0, 1.0)  # (n,) 0 primary tone, 1 shade
    if (dark > 0.5).mean() < 0.08:
        return "plain", {"plain": 1.0}
    offsets = np.arange(-4.0, 4.01, 0.5)
    ox, oy = np.meshgrid(offsets, offsets)
    cx, cy = center[0] + ox.ravel(), center[1] + oy.ravel()  # (K,)
    scores = {}
    for name in ("striped", "dotted", "checkered"):
        expected = _pattern_maps(name, xs, ys, cx, cy)  # (K, n)
        scores[name] = float((1.0 - np.abs(expected - dark[None, :])).mean(axis=1).max())
    return max(scores, key=scores.get), scores


def _shape_of(mask: np.ndarray, box: tuple[int, int, int, int], templates: dict[str, Template]) -> dict[str, float]:
    x0, y0, x1, y1 = box
    crop = cv2.resize(mask[y0:y1, x0:x1].astype(np.float32), (TEMPLATE_RES, TEMPLATE_RES),
                      interpolation=cv2.INTER_AREA)
    scores = {}
    for name, t in templates.items():
        scores[name] = float(np.minimum(crop, t.crop).sum() / max(np.maximum(crop, t.crop).sum(), 1e-6))
    return scores


def position_name(cx: float, cy: float) -> str:
    """The caption phrase of the 3x3 grid cell containing (cx, cy)."""
    cuts = ((GRID[0] + GRID[1]) / 2, (GRID[1] + GRID[2]) / 2)
    gx = int(cx >= cuts[0]) + int(cx >= cuts[1])
    gy = int(cy >= cuts[0]) + int(cy >= cuts[1])
    return next(p for p, cell in POSITIONS.items() if cell == (gx, gy))


def size_name(radius: float) -> str:
    names = sorted(SIZES.items(), key=lambda kv: kv[1])
    best = min(names, key=lambda kv: abs(kv[1] - radius))[0]
    return best or "medium"


def detect(image: np.ndarray | Image.Image, shapes: tuple[str, ...] = TRAIN_SHAPES,
           patterns: tuple[str, ...] = TRAIN_PATTERNS, templates: dict[str, Template] | None = None) -> SceneDetection:
    """Detect every object in an RGB image; `shapes` and `patterns` limit the vocabulary considered."""
    img = as_array(image)
    templates = templates or build_templates(shapes)
    templates = {s: templates[s] for s in shapes}
    fg = foreground(img)
    background = estimate_background(img, fg)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    objects = []
    for i in range(1, count):
        if stats[i, cv2.CC_STAT_AREA] < MIN_AREA:
            continue
        mask = labels == i
        x0, y0 = int(stats[i, cv2.CC_STAT_LEFT]), int(stats[i, cv2.CC_STAT_TOP])
        box = (x0, y0, x0 + int(stats[i, cv2.CC_STAT_WIDTH]), y0 + int(stats[i, cv2.CC_STAT_HEIGHT]))
        scores = _shape_of(mask, box, templates)
        shape = max(scores, key=scores.get)
        t = templates[shape]
        w, h = box[2] - box[0], box[3] - box[1]
        cx = (box[0] + box[2]) / 2 + t.anchor_offset[0] * w
        cy = (box[1] + box[3]) / 2 + t.anchor_offset[1] * h
        inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        color, _ = _color_of(img[inner if inner.sum() >= 12 else mask])
        (pattern, _), color2 = _pattern_of(img, mask, (cx, cy)), None
        top, bottom = mask & (np.arange(img.shape[0])[:, None] < cy), mask & (np.arange(img.shape[0])[:, None] > cy)
        if "twotone" in patterns and top.sum() >= 6 and bottom.sum() >= 6:
            c_top, ch_top = _color_of(img[top])
            c_bot, ch_bot = _color_of(img[bottom])
            if c_top != c_bot and np.linalg.norm(ch_top - ch_bot) > 0.15:
                pattern, color, color2 = "twotone", c_top, c_bot
        objects.append(Detection(mask, box, (cx, cy), color, shape, pattern, size_name(max(w, h) / t.extent),
                                 position_name(cx, cy), color2, scores))
    objects.sort(key=lambda d: -int(d.mask.sum()))
    return SceneDetection(tuple(objects), background)
