"""Safe image input and atomic image output.

Why: images come from users and from other tools, so decoding them is an attack surface (decompression
bombs, exotic decoders with CVEs, truncated files that half-decode) and a privacy leak (EXIF with GPS
and camera serials). The rules:

* only PNG, JPEG and WebP are decoded (`Image.open(..., formats=...)`), every other decoder stays off;
* Pillow's own bomb guard stays on and a lower studio limit is checked on the header size, before any
  pixel is decoded;
* truncated data is refused (`ImageFile.LOAD_TRUNCATED_IMAGES` is never touched);
* EXIF orientation is applied, and nothing from the input's metadata survives into our images;
* outputs are written to a temporary file in the target folder and renamed into place, so a crash
  never leaves a half-written PNG that a resumed batch would mistake for a finished one.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from studio.atomic_write import publish_bytes
from studio.errors import (
    EmptyFileError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedImageFormatError,
)

ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")
# 64 MiB pixels (e.g. 8192x8192): below Pillow's 89 MP warning threshold, far above any diffusion size.
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
DEFAULT_MAX_SIDE = 16384

# Magic numbers of formats we decode (to call a failure "truncated") and of common ones we refuse (to
# name them in the error). Checked by content, never by extension.
_ACCEPTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
)
_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"SIMPLE  =", "FITS"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"P1", "PNM"),
    (b"P2", "PNM"),
    (b"P3", "PNM"),
    (b"P4", "PNM"),
    (b"P5", "PNM"),
    (b"P6", "PNM"),
)


def sniff_image_format(head: bytes) -> tuple[str | None, bool]:
    """Name the image format from its first bytes: `(name, accepted)`, or `(None, False)` if unknown."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP", True
    for magic, name in _ACCEPTED_MAGIC:
        if head.startswith(magic):
            return name, True
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "HEIF/AVIF", False
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic):
            return name, False
    return None, False


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency composited on white, so a transparent PNG does not turn black."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _undecodable(name: str, sniffed: str | None, accepted: bool) -> Exception:
    if accepted:
        return TruncatedImageError(f"{name}: the {sniffed} file is truncated or corrupt")
    return NotAnImageError(f"{name}: not an image (expected PNG, JPEG or WebP)")


def existing_file(path: Path) -> Path:
    """`path` if it is a readable regular file, else a `NotAnImageError` saying what it is instead."""
    try:
        if path.is_dir():
            raise NotAnImageError(f"{path.name}: is a folder, not an image file (expected PNG, JPEG or WebP)")
        if not path.is_file():
            what = "not a regular file" if path.exists() else "no such file"
            raise NotAnImageError(f"{path.name}: {what}")
    except OSError as exc:  # a name too long for the file system, a path through a file, ...
        raise NotAnImageError(f"{path.name[:60]}: cannot be read ({exc.strerror})") from exc
    return path


def _decode(stream: BinaryIO, name: str, max_pixels: int, max_side: int) -> Image.Image:
    head = stream.read(16)
    if not head:
        raise EmptyFileError(f"{name}: the file is empty (0 bytes)")
    stream.seek(0)
    sniffed, accepted = sniff_image_format(head)
    if sniffed is not None and not accepted:
        raise UnsupportedImageFormatError(
            f"{name}: {sniffed} images are not supported; convert it to PNG, JPEG or WebP"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=list(ACCEPTED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{name}: refused as a possible decompression bomb ({exc})") from exc
    except ValueError as exc:
        if "MAX_TEXT" in str(exc):  # Pillow's text-chunk guards: a zTXt/iTXt bomb, not a broken image
            raise ImageTooLargeError(
                f"{name}: its PNG text metadata inflates past Pillow's limit (1 MB per chunk, 64 MB in all);"
                " refused as a possible decompression bomb"
            ) from exc
        raise _undecodable(name, sniffed, accepted) from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        if accepted:
            raise TruncatedImageError(f"{name}: the {sniffed} file is truncated or corrupt") from exc
        raise NotAnImageError(f"{name}: not an image (expected PNG, JPEG or WebP)") from exc
    width, height = image.size
    if width * height > max_pixels or max(width, height) > max_side:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} exceeds the studio limit of {max_pixels} pixels / {max_side} px per side"
            " (possible decompression bomb)"
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise TruncatedImageError(f"{name}: the {image.format} file is truncated or corrupt") from exc
    return image


def open_image(
    source: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
) -> Image.Image:
    """Decode an untrusted PNG/JPEG/WebP into a fresh RGB image, upright, with no metadata attached.

    Raises the `ImageError` subclasses for empty, unknown, unsupported, truncated and oversized input.
    """
    rgb = _flatten_to_rgb(open_image_channels(source, max_pixels=max_pixels, max_side=max_side))
    rgb.info = {}  # never carry input EXIF/ICC/text into anything we later save
    return rgb


def open_for_metadata(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The decoded image with its format and metadata (text chunks, EXIF) kept, for metadata readers.

    Why: a metadata parser that opened the file itself would run Pillow's every decoder on untrusted
    bytes; this one is opened under the same rules as `open_image` (format allow-list, bomb limits,
    truncation refused) and handed over already decoded. Never save what it returns.
    """
    path = existing_file(Path(path))
    with path.open("rb") as stream:
        return _decode(stream, path.name, max_pixels, DEFAULT_MAX_SIDE)


def read_text_chunks(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, str]:
    """The text metadata of an accepted image, without decoding its pixels.

    PNG tEXt/iTXt/zTXt chunks come through `im.text` (bounded by Pillow's MAX_TEXT_CHUNK/MAX_TEXT_MEMORY).
    Format and size checks are the same as `open_image`, so a bomb or a GIF is refused here too.
    """
    path = existing_file(Path(path))
    with path.open("rb") as stream:
        # Decode fully: a truncated file must be refused here as well, not half-trusted.
        image = _decode(stream, path.name, max_pixels, DEFAULT_MAX_SIDE)
        text = getattr(image, "text", None)
        if text is None:
            text = {k: v for k, v in image.info.items() if isinstance(v, str)}
        return dict(text)


def encode_png(image: Image.Image, text: Mapping[str, str] | None = None) -> bytes:
    """PNG bytes holding only the pixels and our own text chunks (iTXt, so UTF-8 prompts survive)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    clean = image.convert("RGB") if image.mode not in ("RGB", "RGBA", "L") else image
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> Path:
    """Write `data` at `path` atomically, never over an existing file unless `overwrite` (see atomic_write)."""
    return publish_bytes(path, data, overwrite=overwrite)


def save_png(
    image: Image.Image,
    path: str | os.PathLike[str],
    text: Mapping[str, str] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Encode `image` as PNG with our text chunks and write it atomically (never over a file unless asked)."""
    return publish_bytes(path, encode_png(image, text), overwrite=overwrite)


def open_image_channels(
    source: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
) -> Image.Image:
    """Like `open_image`, but keeps the decoded mode (L, LA, RGBA, ...) instead of flattening to RGB.

    Masks need this: a transparent-background RGBA mask flattened onto white would turn all foreground.
    """
    if isinstance(source, bytes):
        image = _decode(io.BytesIO(source), "image", max_pixels, max_side)
    else:
        path = existing_file(Path(source))
        with path.open("rb") as stream:
            image = _decode(stream, path.name, max_pixels, max_side)
    upright = ImageOps.exif_transpose(image)
    upright.info = {}
    return upright
