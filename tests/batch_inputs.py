"""A folder of hostile, broken and odd inputs for batch tests, with what each must end as (done or failed)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from tests.studio_inputs import bomb_png, image_bytes, png_bytes, write_malicious_pickle


def _save(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _scene(size=(64, 64), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((size[1], size[0], 3), np.uint8) + 90
    pixels[16:48, 16:48] = rng.integers(0, 255, 3, dtype=np.uint8)
    return Image.fromarray(pixels)


def write_bad_images(folder: Path, marker: Path) -> dict[str, str]:
    """Write the cases into `folder`; returns {file name: "done" | a regex its error must match}."""
    folder.mkdir(parents=True, exist_ok=True)
    good = _save(_scene(), "PNG")
    jpeg = _save(_scene(seed=1), "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: exif_transpose turns it upright
    cases: dict[str, tuple[bytes, str]] = {
        "good-1.png": (good, "done"),
        "good-2.jpg": (jpeg, "done"),
        "empty.png": (b"", "empty"),
        "truncated.png": (png_bytes()[:300], "truncated or corrupt"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated or corrupt"),
        "random.png": (np.random.default_rng(0).bytes(4096), "not an image"),
        "text.png": (b"this is a text file, not a PNG\n" * 10, "not an image"),
        "pickle.png": (b"", "not an image"),  # written below: unpickling it would create the marker
        "bomb.png": (bomb_png(30000, 30000), "decompression bomb"),
        "gif.png": (image_bytes("GIF"), "GIF"),
        "bmp.bmp": (image_bytes("BMP"), "BMP"),
        "tiff.tif": (image_bytes("TIFF"), "TIFF"),
        "jpeg-header-only.jpg": (b"\xff\xd8\xff\xe0" + b"\0" * 20, "truncated or corrupt|not an image"),
        "cmyk.jpg": (_save(_scene(seed=2).convert("CMYK"), "JPEG"), "done"),
        "la.png": (_save(_scene(seed=3).convert("LA"), "PNG"), "done"),
        "palette.png": (_save(_scene(seed=4).convert("P"), "PNG"), "done"),
        "gray16.png": (_save(_scene(seed=5).convert("I;16"), "PNG"), "done"),
        "gray.png": (_save(_scene(seed=6).convert("L"), "PNG"), "done"),
        "rgba.png": (_save(_scene(seed=7).convert("RGBA"), "PNG"), "done"),
        "exif-rotated.jpg": (_save(_scene((64, 48), seed=8), "JPEG", exif=exif), "done"),
        "one-pixel.png": (_save(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"), "done"),
        "huge.png": (_save(Image.new("RGB", (3000, 2000), (20, 120, 40)), "PNG"), "done"),
        "webp-truncated.webp": (_save(_scene(seed=9), "WEBP")[:40], "truncated or corrupt|not an image"),
    }
    expected = {}
    for name, (data, outcome) in cases.items():
        (folder / name).write_bytes(data)
        expected[name] = outcome
    write_malicious_pickle(folder / "pickle.png", marker)
    return expected


def write_mask_cases(folder: Path) -> dict[str, str]:
    """Images with masks by the rule `masks/<stem>.png`: good, wrong size, empty, missing, not an image."""
    masks = folder / "masks"
    masks.mkdir(parents=True, exist_ok=True)
    square = np.zeros((64, 64), np.uint8)
    square[16:48, 16:48] = 255
    cases = {
        "masked.png": (Image.fromarray(square), "done"),
        "wrong-size.png": (Image.fromarray(square).resize((32, 32)), "does not match its image"),
        "empty-mask.png": (Image.new("L", (64, 64), 0), "mask is empty"),
        "missing-mask.png": (None, "missing mask"),
        "garbage-mask.png": (b"garbage", "not an image"),
    }
    expected = {}
    for index, (name, (mask, outcome)) in enumerate(cases.items()):
        _scene(seed=20 + index).save(folder / name)
        if isinstance(mask, Image.Image):
            mask.save(masks / name)
        elif isinstance(mask, bytes):
            (masks / name).write_bytes(mask)
        expected[name] = outcome
    return expected
