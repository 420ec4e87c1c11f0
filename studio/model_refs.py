"""Resolve a model reference string to one of four kinds, without loading anything.

Why: `--model` accepts `toyworld`, a hub id, a local diffusers folder, or a single-file checkpoint. The
kind decides how to load, and every safety check that can be made on disk (pickle refusal, SD-versus-
SDXL from the safetensors header) is made here, before diffusers or torch are touched. This keeps bad
references cheap to reject and their errors precise.
"""

from __future__ import annotations

import enum
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from studio.checkpoints import (
    CheckpointFamily,
    FileKind,
    checkpoint_family,
    pickle_refusal,
    sniff_weights_file,
)
from studio.errors import UnknownModelReferenceError, UnsupportedModelError

TOYWORLD = "toyworld"
# The pipeline classes our backbone understands, by the `_class_name` in model_index.json.
SUPPORTED_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".pkl", ".msgpack", ".h5", ".onnx")


class ModelKind(enum.Enum):
    TOYWORLD = "toyworld"
    HUB = "hub"
    FOLDER = "folder"
    SINGLE_FILE = "single_file"


@dataclass(frozen=True)
class ModelRef:
    """A resolved reference. `location` is a hub id or an absolute local path; `family` is known for files."""

    text: str
    kind: ModelKind
    location: str
    family: CheckpointFamily | None = None


def unknown_reference(text: str) -> UnknownModelReferenceError:
    return UnknownModelReferenceError(
        f"unknown model reference {text!r}: not a local folder, .safetensors file, or reachable hub id"
    )


def resolve_model_ref(text: str) -> ModelRef:
    """Turn a user's `--model` text into a `ModelRef`, refusing pickle and unknown references."""
    text = text.strip()
    if not text:
        raise unknown_reference(text)
    if text == TOYWORLD:
        return _resolve_toyworld()
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        return ModelRef(text, ModelKind.FOLDER, str(path.resolve()), folder_family(path))
    if path.is_file():
        family = _single_file_family(path)
        return ModelRef(text, ModelKind.SINGLE_FILE, str(path.resolve()), family)
    if _HUB_ID_RE.match(text) and not text.endswith(_WEIGHT_SUFFIXES):
        return ModelRef(text, ModelKind.HUB, text)
    raise unknown_reference(text)


def _resolve_toyworld() -> ModelRef:
    try:
        from studio.toyworld import toyworld_path  # lazy: the toyworld package is optional at this layer
    except ImportError as exc:
        raise UnknownModelReferenceError(
            "the bundled 'toyworld' model is not available in this build yet; pass --model with a local"
            " diffusers folder, a .safetensors checkpoint or a hub id"
        ) from exc
    path = Path(toyworld_path())
    if not (path / "model_index.json").is_file():
        raise UnknownModelReferenceError(
            f"the bundled 'toyworld' model is missing its weights ({path.name}/model_index.json not found)"
        )
    return ModelRef(TOYWORLD, ModelKind.TOYWORLD, str(path.resolve()), folder_family(path))


def _single_file_family(path: Path) -> CheckpointFamily:
    kind = sniff_weights_file(path)
    if kind in (FileKind.PICKLE, FileKind.TORCH_ZIP):
        raise pickle_refusal(path, kind)
    if kind is not FileKind.SAFETENSORS:
        raise UnsupportedModelError(
            f"{path.name}: not a model file the studio can load ({kind.value} content; expected safetensors)"
        )
    return checkpoint_family(path)


def folder_family(folder: Path) -> CheckpointFamily:
    """Check a diffusers folder: a supported pipeline class, and safetensors weights for every component.

    A component whose only weights are pickle (`.bin`, `.ckpt`, ...) is refused here, before
    `from_pretrained` could be tempted to read it. Each `.safetensors` file is also sniffed, so a pickle
    renamed to `.safetensors` is named as such instead of failing deep inside the loader.
    """
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise UnknownModelReferenceError(
            f"unknown model reference {folder.name!r}: the folder is not a diffusers model (no model_index.json)"
        )
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnsupportedModelError(f"{folder.name}/model_index.json is not valid JSON ({exc})") from exc
    class_name = index.get("_class_name") if isinstance(index, dict) else None
    if class_name not in SUPPORTED_PIPELINES:
        raise UnsupportedModelError(
            f"{folder.name}: {class_name or 'unknown'} models are not supported;"
            f" the studio runs {' and '.join(SUPPORTED_PIPELINES)}"
        )
    for component, spec in index.items():
        if component.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        _check_component_weights(folder / component)
    return CheckpointFamily.SDXL if class_name == "StableDiffusionXLPipeline" else CheckpointFamily.SD


def _check_component_weights(component_dir: Path) -> None:
    if not component_dir.is_dir():
        return
    files = [p for p in component_dir.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)]
    safetensors = [p for p in files if p.suffix == ".safetensors"]
    for weights in safetensors:
        kind = sniff_weights_file(weights)
        if kind in (FileKind.PICKLE, FileKind.TORCH_ZIP):
            raise pickle_refusal(weights, kind)
        if kind is not FileKind.SAFETENSORS:
            raise UnsupportedModelError(f"{component_dir.name}/{weights.name}: corrupt safetensors file")
    pickles = [p for p in files if p.suffix in (".bin", ".ckpt", ".pt", ".pth", ".pkl")]
    if pickles and not safetensors:
        kind = sniff_weights_file(pickles[0])
        raise pickle_refusal(pickles[0], kind if kind is FileKind.TORCH_ZIP else FileKind.PICKLE)
