"""Mask binarisation: JPEG noise, channels and sizes must not change which pixels are foreground."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from studio.masks import MaskError, binarize_mask, load_mask


def disk(size=(48, 64)) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    return (yy - h / 2) ** 2 + (xx - w / 2.5) ** 2 < (min(h, w) / 3) ** 2


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize(
    "make",
    [
        lambda m: Image.fromarray(m.astype(np.uint8) * 255, "L"),
        lambda m: Image.fromarray(np.stack([m.astype(np.uint8) * 255] * 3, -1), "RGB"),
        lambda m: Image.fromarray(np.dstack([np.zeros(m.shape + (3,), np.uint8), m.astype(np.uint8) * 255]), "RGBA"),
        lambda m: Image.fromarray(m.astype(np.uint8) * 200 + 20, "L"),  # not 0/255: grey on dark grey
    ],
    ids=["L", "RGB", "RGBA-alpha", "grey-levels"],
)
def test_binarize_recovers_the_mask_from_any_channel_layout(make):
    truth = disk()
    assert iou(binarize_mask(make(truth)), truth) > 0.98


def test_jpeg_noise_does_not_erode_the_mask():
    truth = disk((96, 128))
    noisy = Image.open(io.BytesIO(encode(Image.fromarray(truth.astype(np.uint8) * 255, "L"), "JPEG", quality=30)))
    strict = np.asarray(noisy) == 255  # the official `== 255` reading, for comparison
    ours = binarize_mask(noisy)
    assert iou(ours, truth) > 0.97
    assert iou(ours, truth) > iou(strict, truth) + 0.05


def test_load_mask_checks_size_and_emptiness(tmp_path):
    path = tmp_path / "m.png"
    path.write_bytes(encode(Image.fromarray(disk().astype(np.uint8) * 255, "L"), "PNG"))
    mask = load_mask(path, expected_size=(64, 48))
    assert mask.shape == (48, 64) and set(mask.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(MaskError, match="does not match"):
        load_mask(path, expected_size=(32, 32))
    empty = tmp_path / "e.png"
    empty.write_bytes(encode(Image.new("L", (16, 16), 0), "PNG"))
    with pytest.raises(MaskError, match="empty"):
        load_mask(empty)
