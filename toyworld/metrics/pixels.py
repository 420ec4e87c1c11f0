"""Pixel metrics inside and outside a mask: did an edit change what it should, and only that?

Images are compared in [0, 1] (uint8 inputs are divided by 255). An empty region gives NaN rather
than a made-up number.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

ImageLike = np.ndarray | Image.Image


def _unit(image: ImageLike) -> np.ndarray:
    """(H, W, C) float64 in [0, 1]."""
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    arr = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
    return arr[..., None] if arr.ndim == 2 else arr


def _region(shape: tuple[int, ...], mask: np.ndarray | None, outside: bool) -> np.ndarray:
    if mask is None:
        return np.ones(shape[:2], bool)
    m = np.asarray(mask, bool)
    if m.shape != shape[:2]:
        raise ValueError(f"mask shape {m.shape} does not match image shape {shape[:2]}")
    return ~m if outside else m


def _masked_difference(a: ImageLike, b: ImageLike, mask: np.ndarray | None, outside: bool) -> np.ndarray:
    """x - y at the pixels in `mask` (or outside it): (P, C); empty when the region is."""
    x, y = _unit(a), _unit(b)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {x.shape} vs {y.shape}")
    return (x - y)[_region(x.shape, mask, outside)]


def masked_mse(a: ImageLike, b: ImageLike, mask: np.ndarray | None = None, outside: bool = False) -> float:
    """Mean squared error over the pixels in `mask` (or outside it), all channels; NaN for an empty region."""
    diff = _masked_difference(a, b, mask, outside)
    return float((diff**2).mean()) if diff.size else float("nan")


def masked_mae(a: ImageLike, b: ImageLike, mask: np.ndarray | None = None, outside: bool = False) -> float:
    """Mean absolute error over the pixels in `mask` (or outside it), all channels; NaN for an empty region."""
    diff = _masked_difference(a, b, mask, outside)
    return float(np.abs(diff).mean()) if diff.size else float("nan")


def masked_psnr(a: ImageLike, b: ImageLike, mask: np.ndarray | None = None, outside: bool = False,
                max_db: float = 100.0) -> float:
    """PSNR in dB over a region; identical regions give `max_db` instead of infinity."""
    mse = masked_mse(a, b, mask, outside)
    if np.isnan(mse):
        return mse
    return float(min(max_db, 10.0 * np.log10(1.0 / mse))) if mse > 0 else max_db


def psnr(a: ImageLike, b: ImageLike, max_db: float = 100.0) -> float:
    return masked_psnr(a, b, None, False, max_db)
