"""Reading user masks robustly.

Why: masks arrive as PNGs from editors, JPEGs with ringing at the edges, RGB screenshots, or RGBA layers
whose alpha is the mask. The official FreeCustom loader keeps only pixels of exactly 255, so JPEG noise
erodes the mask. Here a mask is the channel that carries the signal (alpha when it varies, otherwise
luminance), split by Otsu's threshold, then cleaned of isolated specks.
"""

from __future__ import annotations

import os

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from studio.errors import InputError
from studio.images import open_image_channels

if TYPE_CHECKING:
    import torch


MIN_MASK_SIDE = 8  # the VAE's downsampling factor: a smaller mask cannot cover even one latent cell


class MaskError(InputError):
    """A mask that cannot be used: wrong size, empty, or unreadable."""


def binarize_mask(image: Image.Image) -> np.ndarray:
    """A [H, W] bool array from any mask image: single- or multi-channel, any size, noisy or clean."""
    import cv2  # imported here so the CLI can start without loading OpenCV

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
        signal = alpha if alpha.max() - alpha.min() > 32 else np.asarray(image.convert("L"))
    else:
        signal = np.asarray(image.convert("L"))
    signal = np.ascontiguousarray(signal, dtype=np.uint8)
    if int(signal.max()) - int(signal.min()) < 32:  # flat: all foreground or all background
        return np.full(signal.shape, bool(signal.mean() >= 128))
    _, binary = cv2.threshold(signal, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    kernel = np.ones((3, 3), np.uint8)
    if min(binary.shape) >= 16:  # remove JPEG specks and pinholes without eating small masks
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    return binary.astype(bool)


def load_mask(
    source: str | os.PathLike[str] | bytes,
    *,
    expected_size: tuple[int, int] | None = None,
    name: str = "mask",
) -> torch.Tensor:
    """A float {0, 1} tensor [H, W] for a mask file; `expected_size` is the (width, height) of its image."""
    image = open_image_channels(source)
    if min(image.size) < MIN_MASK_SIDE:
        raise MaskError(
            f"{name}: a {image.size[0]}x{image.size[1]} mask is too small; a mask covers its image's pixels and"
            f" must be at least {MIN_MASK_SIDE}x{MIN_MASK_SIDE} (one latent cell is 8x8 pixels)"
        )
    if expected_size is not None and image.size != tuple(expected_size):
        raise MaskError(
            f"{name}: size {image.size[0]}x{image.size[1]} does not match its image "
            f"({expected_size[0]}x{expected_size[1]}); masks must cover the same pixels as their image"
        )
    binary = binarize_mask(image)
    if not binary.any():
        raise MaskError(f"{name}: the mask is empty (no foreground pixels); paint the object white on black")
    import torch  # imported here so the CLI can start without loading torch

    return torch.from_numpy(binary.astype(np.float32))
