"""Find a model that other tools' metadata names (`Model: v1-5-pruned`, `Model hash: 6ce0161689`) in the
user's model folders.

Why: an A1111 or ComfyUI image names its checkpoint by file stem and AutoV2 hash, not by a path or a hub
id; treating that name as a hub id would fail far from the cause (or fetch the wrong model). The folders
are `DIFFUSION_STUDIO_MODEL_DIRS` (separated by the platform's path separator, `:` on Linux and macOS);
a name matches `NAME.safetensors` or a diffusers folder `NAME` in one of them, else a hash matches a
model's AutoV2 hash (studio.model_hash; computed once per file, then cached).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from studio.errors import UnknownModelReferenceError
from studio.model_hash import model_hash

MODEL_DIRS_ENV = "DIFFUSION_STUDIO_MODEL_DIRS"


def model_dirs() -> list[Path]:
    """The configured model folders, in order (empty when the variable is unset)."""
    text = os.environ.get(MODEL_DIRS_ENV, "")
    return [Path(os.path.expanduser(part)) for part in text.split(os.pathsep) if part.strip()]


def _candidates(folder: Path) -> list[Path]:
    """The models in a folder: its `.safetensors` files and its diffusers folders, sorted by name."""
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix == ".safetensors":
            found.append(entry)
        elif entry.is_dir() and (entry / "model_index.json").is_file():
            found.append(entry)
    return found


@dataclass(frozen=True)
class NamedModel:
    """A model named by metadata: its stem (`v1-5-pruned`, a `.safetensors` suffix dropped) and AutoV2 hash."""

    name: str | None
    hash: str | None = None

    def describe(self) -> str:
        parts = [repr(self.name)] if self.name else []
        if self.hash:
            parts.append(f"hash {self.hash}")
        return " ".join(parts) or "no name"


def find_model(model: NamedModel, folders: list[Path] | None = None) -> Path | None:
    """The configured model `model` names: by name first (file stem or folder), then by AutoV2 hash."""
    folders = model_dirs() if folders is None else folders
    stem = Path(model.name).name.removesuffix(".safetensors") if model.name else None
    candidates = [path for folder in folders for path in _candidates(folder)]
    if stem:
        for path in candidates:
            if path.name.removesuffix(".safetensors") == stem:
                return path
    if model.hash:
        wanted = model.hash.strip().lower()[:10]
        for path in candidates:
            if model_hash(path) == wanted:
                return path
    return None


def missing_model_error(model: NamedModel, folders: list[Path] | None = None) -> UnknownModelReferenceError:
    folders = model_dirs() if folders is None else folders
    searched = ", ".join(str(f) for f in folders) if folders else f"none configured (set {MODEL_DIRS_ENV})"
    return UnknownModelReferenceError(
        f"the image names model {model.describe()}, found in no model folder (searched: {searched});"
        " add it to a folder in " + MODEL_DIRS_ENV + ", or give --model"
    )
