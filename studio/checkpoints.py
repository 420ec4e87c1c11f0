"""Judge weight files by their bytes, read safetensors headers, and refuse pickle.

Why: a pickle checkpoint (`.ckpt`, `.bin`, `.pt`, `.pth`) can run arbitrary code when loaded, and even
`torch.load(weights_only=True)` has had RCE bugs (CVE-2025-32434). Extensions lie, so a file's
kind is decided by its first bytes (the InvokeAI rule): safetensors is an 8-byte little-endian header
length followed by a JSON object; a torch zip starts `PK\\x03\\x04`; a legacy pickle starts with the
protocol opcode `\\x80`. Nothing here imports torch or reads tensor data: the SD-versus-SDXL decision is
made from the header's key names alone.
"""

from __future__ import annotations

import enum
import os
import struct
from pathlib import Path
from typing import Any

from studio.errors import PickleCheckpointError, UnsupportedModelError
from studio.safe_json import JsonError, parse_json

# The safetensors format caps the header at 100 MB; real SD/SDXL headers are a few hundred KB.
MAX_HEADER_BYTES = 100 * 1024 * 1024
UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"  # (320, in_channels, 3, 3)


class FileKind(enum.Enum):
    SAFETENSORS = "safetensors"
    TORCH_ZIP = "pickle (PyTorch zip)"
    PICKLE = "pickle"
    EMPTY = "empty"
    UNKNOWN = "unknown"


def sniff_weights_file(path: str | os.PathLike[str]) -> FileKind:
    """The kind of a weight file from its first bytes; never from its name."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as stream:
        head = stream.read(9)
    if not head:
        return FileKind.EMPTY
    # Safetensors is tested first: a header of 384, 640, 896, 1152 or 1408 bytes starts `\x80\x01`..`\x80\x05`,
    # which is also how a pickle starts (found on real shards). The converse cannot happen: a pickle's
    # first eight bytes read as a length far beyond its size, and a zip's as well.
    if len(head) == 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 2 <= header_len <= min(MAX_HEADER_BYTES, size - 8) and head[8:9] == b"{":
            return FileKind.SAFETENSORS
    if head.startswith(b"PK\x03\x04"):
        return FileKind.TORCH_ZIP
    if head[0] == 0x80 and len(head) > 1 and 1 <= head[1] <= 5:
        return FileKind.PICKLE
    return FileKind.UNKNOWN


def pickle_refusal(path: Path, kind: FileKind) -> PickleCheckpointError:
    """The one-line refusal for a pickle file, with how to get a safetensors copy."""
    return PickleCheckpointError(
        f"refusing {path.name}: it is a {kind.value} checkpoint, and loading pickle can run arbitrary code;"
        " the studio only loads .safetensors. Use the model's .safetensors release, or convert it once in a"
        ' throwaway sandbox: python -c "import torch, safetensors.torch as st;'
        f" sd = torch.load('{path.name}', weights_only=True); st.save_file(sd.get('state_dict', sd),"
        f" '{path.stem}.safetensors')\""
    )


def read_safetensors_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes); no tensor data is read."""
    path = Path(path)
    kind = sniff_weights_file(path)
    if kind in (FileKind.PICKLE, FileKind.TORCH_ZIP):
        raise pickle_refusal(path, kind)
    if kind is not FileKind.SAFETENSORS:
        raise UnsupportedModelError(f"{path.name}: not a safetensors file ({kind.value} content)")
    with path.open("rb") as stream:
        (header_len,) = struct.unpack("<Q", stream.read(8))
        raw = stream.read(header_len)
    try:
        header = parse_json(raw, f"{path.name}: corrupt safetensors header", max_bytes=MAX_HEADER_BYTES)
    except JsonError as exc:
        raise UnsupportedModelError(str(exc)) from exc
    if not isinstance(header, dict):
        raise UnsupportedModelError(f"{path.name}: corrupt safetensors header (not a JSON object)")
    return header


def safetensors_byte_length(path: str | os.PathLike[str]) -> int:
    """The size a complete safetensors file has: 8 + its header + the end of its last tensor's data."""
    header = read_safetensors_header(path)
    with Path(path).open("rb") as stream:
        (header_len,) = struct.unpack("<Q", stream.read(8))
    ends = [entry.get("data_offsets", [0, 0])[1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict)]
    if not all(isinstance(end, int) for end in ends):
        raise UnsupportedModelError(f"{Path(path).name}: corrupt safetensors header (data offsets)")
    return 8 + header_len + max(ends, default=0)


def tensor_names(header: dict[str, Any]) -> list[str]:
    return [name for name in header if name != "__metadata__"]


class CheckpointFamily(enum.Enum):
    SD = "sd"  # SD 1.x / 2.x: StableDiffusionPipeline
    SDXL = "sdxl"  # SDXL base: StableDiffusionXLPipeline


def checkpoint_family(path: str | os.PathLike[str]) -> CheckpointFamily:
    """SD1.x/2.x or SDXL, decided from the header's key names (the keys diffusers' own detection uses).

    SDXL base has a second text embedder (`conditioner.embedders.1.*`); the SDXL refiner has only
    `conditioner.embedders.0.*` and is an img2img-only model; SD1.x/2.x keep their text encoder under
    `cond_stage_model.*`. The UNet's first convolution has 4 input channels for text-to-image models
    (9 for inpainting, 8 for instruct-pix2pix, which the studio's pipelines cannot drive). A file with no
    `model.diffusion_model.*` UNet keys (a LoRA, a VAE, an embedding) is not a full checkpoint.
    """
    path = Path(path)
    header = read_safetensors_header(path)
    names = tensor_names(header)
    has_unet = any(n.startswith("model.diffusion_model.") for n in names)
    if not has_unet:
        hint = " (it looks like a LoRA)" if any("lora" in n for n in names) else ""
        raise UnsupportedModelError(
            f"{path.name}: not an SD1.x/2.x/SDXL checkpoint, it has no model.diffusion_model.* weights{hint}"
        )
    conv_in = header.get(UNET_CONV_IN, {})
    shape = conv_in.get("shape") if isinstance(conv_in, dict) else None
    if isinstance(shape, list) and len(shape) == 4 and shape[1] != 4:
        raise UnsupportedModelError(
            f"{path.name}: a UNet with {shape[1]} input channels (inpainting or instruct-pix2pix) is not supported;"
            " use a text-to-image checkpoint"
        )
    if any(n.startswith("conditioner.embedders.1.") for n in names):
        return CheckpointFamily.SDXL
    if any(n.startswith("conditioner.embedders.0.") for n in names):
        raise UnsupportedModelError(f"{path.name}: SDXL refiner checkpoints are not supported (img2img only)")
    return CheckpointFamily.SD
