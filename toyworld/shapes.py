"""Shape and pattern rasterisers, in image pixels, drawn on a supersampled canvas.

Why supersampling: edges are anti-aliased, as a trained generator would draw them, while the ground
truth mask (coverage >= 0.5) stays exact. Shapes have a fixed orientation, so a template match by
bounding box is enough to recognise them.
"""

from __future__ import annotations

import cv2
import numpy as np

SUPERSAMPLE = 4


def _poly(points: np.ndarray, canvas: int) -> np.ndarray:
    """Fill a polygon given in supersampled pixel coordinates; returns a bool (canvas, canvas) mask."""
    out = np.zeros((canvas, canvas), np.uint8)
    cv2.fillPoly(out, [np.round(points * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(bool)


def _disc(cx: float, cy: float, r: float, canvas: int) -> np.ndarray:
    yy, xx = np.mgrid[0:canvas, 0:canvas] + 0.5  # (canvas, canvas) pixel centres
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _star_points(cx: float, cy: float, r: float) -> np.ndarray:
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5  # (10,) alternating outer and inner vertices
    radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)


def shape_mask(shape: str, cx: float, cy: float, r: float, canvas: int) -> np.ndarray:
    """Bool mask (canvas, canvas) of `shape` centred at (cx, cy) with half-size r, all in canvas pixels."""
    if shape == "circle":
        return _disc(cx, cy, r, canvas)
    if shape == "ring":
        return _disc(cx, cy, r, canvas) & ~_disc(cx, cy, 0.55 * r, canvas)
    if shape == "square":
        h = 0.86 * r
        return _poly(np.array([[cx - h, cy - h], [cx + h, cy - h], [cx + h, cy + h], [cx - h, cy + h]]), canvas)
    if shape == "triangle":
        return _poly(np.array([[cx, cy - r], [cx + r, cy + 0.78 * r], [cx - r, cy + 0.78 * r]]), canvas)
    if shape == "star":
        return _poly(_star_points(cx, cy, 1.08 * r), canvas)
    if shape == "cross":
        w = 0.36 * r
        vertical = _poly(np.array([[cx - w, cy - r], [cx + w, cy - r], [cx + w, cy + r], [cx - w, cy + r]]), canvas)
        horizontal = _poly(np.array([[cx - r, cy - w], [cx + r, cy - w], [cx + r, cy + w], [cx - r, cy + w]]), canvas)
        return vertical | horizontal
    if shape == "crescent":
        return _disc(cx, cy, r, canvas) & ~_disc(cx + 0.5 * r, cy - 0.2 * r, 0.8 * r, canvas)
    if shape == "hexagon":
        angles = np.arange(6) * np.pi / 3  # (6,) flat top and bottom, points left and right
        return _poly(np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1), canvas)
    raise ValueError(f"unknown shape {shape!r}")


def pattern_shade(pattern: str, cx: float, cy: float, canvas: int, scale: int) -> np.ndarray:
    """Bool map (canvas, canvas): True where the pattern's second tone is drawn.

    The pattern is anchored at the object's centre so an object looks the same wherever it is placed.
    Periods are in image pixels (stripes 6, checks 8, dots 5), coarse enough to survive a x4 VAE.
    """
    yy, xx = np.mgrid[0:canvas, 0:canvas] + 0.5  # (canvas, canvas)
    u = (xx - cx) / scale  # image-pixel offsets from the object's centre
    v = (yy - cy) / scale
    if pattern == "plain":
        return np.zeros((canvas, canvas), bool)
    if pattern == "striped":
        return np.floor(v / 3.0 + 0.5).astype(int) % 2 == 1
    if pattern == "checkered":
        return (np.floor(u / 4.0) + np.floor(v / 4.0)).astype(int) % 2 == 1
    if pattern == "dotted":
        du = np.mod(u + 2.5, 5.0) - 2.5
        dv = np.mod(v + 2.5, 5.0) - 2.5
        return du * du + dv * dv <= 1.45**2
    if pattern == "twotone":
        return v > 0
    raise ValueError(f"unknown pattern {pattern!r}")
