"""Resolve a model reference string to one of four kinds, without loading anything.

Why: `--model` accepts a provided model's name (the bundled `toyworld` is one: see studio/providers.py),
a hub id, a local diffusers folder, or a single-file checkpoint. The kind decides how to load, and every
safety check that can be made on disk (pickle refusal, SD-versus-SDXL from the safetensors header) is
made here, before diffusers or torch are touched. This keeps bad references cheap to reject and their
errors precise.
"""

from __future__ import annotations

import enum
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
from studio.model_folder import folder_family
from studio.providers import ModelProvider, model_provider

DEFAULT_MODEL = "toyworld"  # the bundled model's name; a model provider declares it (pyproject.toml)
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".pkl", ".msgpack", ".h5", ".onnx")


class ModelKind(enum.Enum):
    PROVIDED = "provided"  # a name a model family's provider resolves to a local diffusers folder
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
    provider = model_provider(text)
    if provider is not None:
        return _resolve_provided(text, provider)
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        return ModelRef(text, ModelKind.FOLDER, str(path.resolve()), folder_family(path))
    if path.is_file():
        family = _single_file_family(path)
        return ModelRef(text, ModelKind.SINGLE_FILE, str(path.resolve()), family)
    if _HUB_ID_RE.match(text) and not text.endswith(_WEIGHT_SUFFIXES):
        return ModelRef(text, ModelKind.HUB, text)
    raise unknown_reference(text)


def _resolve_provided(name: str, provider: ModelProvider) -> ModelRef:
    path = Path(provider())
    if not (path / "model_index.json").is_file():
        raise UnknownModelReferenceError(
            f"the model {name!r} is missing its weights ({path / 'model_index.json'} not found)"
        )
    return ModelRef(name, ModelKind.PROVIDED, str(path.resolve()), folder_family(path))


def _single_file_family(path: Path) -> CheckpointFamily:
    kind = sniff_weights_file(path)
    if kind in (FileKind.PICKLE, FileKind.TORCH_ZIP):
        raise pickle_refusal(path, kind)
    if kind is not FileKind.SAFETENSORS:
        raise UnsupportedModelError(
            f"{path.name}: not a model file the studio can load ({kind.value} content; expected safetensors)"
        )
    return checkpoint_family(path)
