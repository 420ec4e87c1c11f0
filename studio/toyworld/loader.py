"""Load the toyworld model folder, failing with a message that names the missing or corrupt file.

Why check first: diffusers' own errors for a half-copied folder are generic (or, worse, silently build
a component from defaults). The studio's default model must say exactly what is wrong. Only
safetensors are accepted, never pickles.
"""

from __future__ import annotations

import json
from pathlib import Path

REQUIRED_JSON = (
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "image_encoder/config.json",
    "scheduler/scheduler_config.json",
    "feature_extractor/preprocessor_config.json",
    "tokenizer/vocab.json",
)
REQUIRED_WEIGHTS = (
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors",
    "image_encoder/model.safetensors",
)
REQUIRED_TEXT = ("tokenizer/merges.txt",)
CLIP_FILES = ("clip/config.json", "clip/model.safetensors")


class ToyworldModelError(RuntimeError):
    """The toyworld model folder is missing, incomplete or corrupt."""


def check_model_folder(path: Path, *, with_clip: bool = False) -> None:
    """Raise ToyworldModelError naming the first missing or unreadable file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_dir():
        raise ToyworldModelError(f"toyworld model folder not found: {path}")
    weights = REQUIRED_WEIGHTS + (CLIP_FILES[1:] if with_clip else ())
    jsons = REQUIRED_JSON + (CLIP_FILES[:1] if with_clip else ())
    for rel in jsons + weights + REQUIRED_TEXT:
        if not (path / rel).is_file():
            raise ToyworldModelError(f"toyworld model is incomplete: missing {path / rel}")
    for rel in jsons:
        try:
            json.loads((path / rel).read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise ToyworldModelError(f"toyworld model file is corrupt (not valid JSON): {path / rel}: {err}") from err
    for rel in weights:
        try:
            with safe_open(str(path / rel), framework="pt") as f:
                keys = list(f.keys())
                if keys:
                    f.get_slice(keys[-1])[:1]  # reads the header and touches the last tensor's extent
        except Exception as err:  # noqa: BLE001 - safetensors raises several types for a damaged file
            raise ToyworldModelError(f"toyworld model file is corrupt (unreadable safetensors): {path / rel}: "
                                     f"{err}") from err
        size = (path / rel).stat().st_size
        expected = _safetensors_extent(path / rel)
        if size != expected:
            raise ToyworldModelError(f"toyworld model file is corrupt (truncated: {size} of {expected} bytes): "
                                     f"{path / rel}")


def _safetensors_extent(file: Path) -> int:
    """Byte length a safetensors file must have, from its header: 8 + header + the last tensor's end."""
    with file.open("rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    return 8 + n + end


def load_pipeline(path: Path, **kwargs):
    """`StableDiffusionPipeline` from a checked folder, local files and safetensors only."""
    from diffusers import StableDiffusionPipeline

    check_model_folder(path)
    kwargs.setdefault("local_files_only", True)
    kwargs.setdefault("use_safetensors", True)
    return StableDiffusionPipeline.from_pretrained(str(path), **kwargs)


def load_clip(path: Path):
    """The full toy-CLIP (`CLIPModel`, both towers and projections) used for CLIP-T / CLIP-I scores."""
    from transformers import CLIPModel

    check_model_folder(path, with_clip=True)
    return CLIPModel.from_pretrained(str(path / "clip"), local_files_only=True, use_safetensors=True).eval()
