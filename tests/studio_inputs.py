"""Hand-crafted hostile and broken inputs for the studio's tests: images, pickles, safetensors files.

Each maker writes real bytes to disk the way an attacker or a broken download would, so tests exercise
the same code paths as real files. The malicious pickle creates a marker file if it is ever unpickled,
which is how tests prove that the studio never unpickles anything.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
import zlib
from pathlib import Path

from PIL import Image


class _TouchOnUnpickle:
    """Unpickling this calls `Path.touch(marker)`: a harmless stand-in for arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def write_malicious_pickle(path: Path, marker: Path) -> Path:
    """A legacy pickle (protocol 4, starts with 0x80) that touches `marker` when loaded."""
    path.write_bytes(pickle.dumps({"state_dict": _TouchOnUnpickle(marker)}, protocol=4))
    return path


def write_torch_zip(path: Path) -> Path:
    """A real `torch.save` checkpoint (zip container, starts with PK\\x03\\x04)."""
    import torch

    torch.save({"model.diffusion_model.w": torch.zeros(2)}, path)
    return path


def write_safetensors_header(
    path: Path, names: list[str], *, truncate_data: bool = False, shapes: dict[str, list[int]] | None = None
) -> Path:
    """A float32 safetensors file with the given tensor names, zero-filled.

    Shapes are realistic where diffusers' model detection reads them (`SHAPES`), one element elsewhere.
    With `truncate_data`, the data section is cut off: only a reader that ignores tensor data (reads the
    header alone) can still make sense of the file.
    """
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in names:
        shape = {**SHAPES, **(shapes or {})}.get(name, [1])
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    data = b"" if truncate_data else b"\0" * offset
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
SHAPES = {UNET_CONV_IN: [320, 4, 3, 3]}
INPAINT_SHAPES = {UNET_CONV_IN: [320, 9, 3, 3]}

SD15_KEYS = [
    UNET_CONV_IN,
    "model.diffusion_model.output_blocks.11.0.skip_connection.weight",
    "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
    "first_stage_model.decoder.conv_in.weight",
]
SDXL_KEYS = [
    UNET_CONV_IN,
    "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight",
    "conditioner.embedders.1.model.positional_embedding",
    "first_stage_model.decoder.conv_in.weight",
]
SDXL_REFINER_KEYS = [
    UNET_CONV_IN,
    "conditioner.embedders.0.model.text_projection",
]
LORA_KEYS = ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"]


def png_bytes(size: tuple[int, int] = (64, 64), seed: int = 0) -> bytes:
    """A noisy RGB PNG (noise so that truncating it really cuts pixel data)."""
    image = Image.effect_noise(size, 60 + seed).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels but whose data is a few bytes: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def image_bytes(fmt: str, size: tuple[int, int] = (16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def png_chunk_types(data: bytes) -> list[bytes]:
    """The chunk types of a PNG, read from its bytes (an oracle independent of Pillow)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    kinds, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kinds.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return kinds


BAD_IMAGES = {
    "empty": lambda: b"",
    "not_an_image": lambda: b"just some text, definitely not pixels\n" * 4,
    "truncated_png": lambda: png_bytes()[: len(png_bytes()) // 2],
    "truncated_png_header_only": lambda: png_bytes()[:40],
    "bomb": lambda: bomb_png(20000, 20000),
    "gif": lambda: image_bytes("GIF"),
    "bmp": lambda: image_bytes("BMP"),
}
