"""Safe image input and atomic output (studio/images.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from studio import images
from studio.errors import (
    EmptyFileError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedImageFormatError,
)
from tests.studio_inputs import BAD_IMAGES, bomb_png, png_bytes, png_chunk_types

EXPECTED_ERROR = {
    "empty": EmptyFileError,
    "not_an_image": NotAnImageError,
    "truncated_png": TruncatedImageError,
    "truncated_png_header_only": TruncatedImageError,
    "bomb": ImageTooLargeError,
    "gif": UnsupportedImageFormatError,
    "bmp": UnsupportedImageFormatError,
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_inputs_are_refused_with_their_own_error(tmp_path, name):
    path = tmp_path / f"{name}.png"  # the extension lies on purpose: content decides
    path.write_bytes(BAD_IMAGES[name]())
    with pytest.raises(EXPECTED_ERROR[name]) as info:
        images.open_image(path)
    assert "\n" not in str(info.value)
    assert path.name in str(info.value)


def test_bomb_below_pillows_limit_is_refused_by_the_studio_limit_before_decoding():
    # 9000 x 9000 = 81 MP: under Pillow's 89 MP warning, over the studio's 64 MiB-pixel limit. The data is
    # only a few bytes, so the refusal must come from the header size, before any decoding.
    assert 9000 * 9000 < Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLargeError):
        images.open_image(bomb_png(9000, 9000))


def test_custom_pixel_limit_applies_to_real_images():
    data = png_bytes((64, 64))
    assert images.open_image(data, max_pixels=64 * 64).size == (64, 64)
    with pytest.raises(ImageTooLargeError):
        images.open_image(data, max_pixels=64 * 64 - 1)


def test_pillow_global_guards_are_untouched():
    images.open_image(png_bytes())
    assert Image.MAX_IMAGE_PIXELS is not None
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepted_formats_decode_to_rgb(fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (10, 200, 30)).save(buffer, format=fmt, quality=95)
    image = images.open_image(buffer.getvalue())
    assert image.mode == "RGB" and image.size == (24, 16)


def test_exif_orientation_is_applied(tmp_path):
    # EXIF orientation 6 means "rotate 90 degrees clockwise to display": the stored top-left pixel is shown
    # at the top-right, and the displayed size has width and height swapped (EXIF 2.3, tag 0x0112).
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.png"
    stored.save(path, exif=exif.tobytes())
    shown = images.open_image(path)
    assert shown.size == (20, 40)
    assert shown.getpixel((19, 0)) == (255, 0, 0)
    assert shown.getpixel((0, 0)) == (0, 0, 255)


def test_input_exif_never_reaches_outputs(tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "serial-12345"  # Software
    source = tmp_path / "photo.jpg"
    Image.new("RGB", (32, 32), (90, 90, 90)).save(source, exif=exif.tobytes())
    image = images.open_image(source)
    assert image.info == {}
    out = images.save_png(image, tmp_path / "out.png", {"parameters": "hello"})
    data = out.read_bytes()
    assert b"SecretCam" not in data and b"serial-12345" not in data
    assert set(png_chunk_types(data)) == {b"IHDR", b"iTXt", b"IDAT", b"IEND"}


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    assert images.open_image(buffer.getvalue()).getpixel((3, 3)) == (255, 255, 255)


def test_text_chunks_round_trip_with_utf8(tmp_path):
    text = {"parameters": "ein Hund — 犬, 🐕", "studio_job": '{"a": 1}'}
    path = images.save_png(Image.new("RGB", (8, 8)), tmp_path / "t.png", text)
    assert images.read_text_chunks(path) == text


def test_read_text_chunks_refuses_bad_files_too(tmp_path):
    path = tmp_path / "t.png"
    path.write_bytes(BAD_IMAGES["truncated_png"]())
    with pytest.raises(ImageError):
        images.read_text_chunks(path)


def test_saved_pixels_are_exact(tmp_path):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    path = images.save_png(image, tmp_path / "x.png")
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(image))


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous complete output")
    with pytest.raises(TypeError):
        images.atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]  # fails mid-write
    assert target.read_bytes() == b"previous complete output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_atomic_write_replaces_and_creates_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    images.atomic_write_bytes(target, b"one")
    images.atomic_write_bytes(target, b"two", overwrite=True)
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]
