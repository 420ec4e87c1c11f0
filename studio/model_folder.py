"""Check a local diffusers folder before any loader sees it: every weight file it could read is safetensors.

Why: diffusers and transformers pick a reader by a file's name, not its bytes, and a folder steers them
with more than its weight files. A sharded model's index (`*.index.json`) names its shards, and a shard
named `x.bin` goes to `torch.load` even when the index is the safetensors one and a decoy
`.safetensors` sits beside it. `model_index.json` names the library each component comes from, and a
library that is not diffusers or transformers means custom code. So the whole folder is read here
first, by content:

- every index anywhere in the folder may name only `.safetensors` shards inside its own folder, and
  each shard must be safetensors by its bytes;
- every `.safetensors` file (a symlink is judged by its target) must be safetensors by its bytes, and
  as long as its header says (a half-copied file is named here, not deep inside a loader);
- every component diffusers will load needs safetensors weights of its own, so a pickle-only
  component is refused rather than left to a fallback;
- components come only from diffusers or transformers.

A pickle file that no index names and that sits beside its component's safetensors weights is never
read: the loader is called with `use_safetensors=True`, which makes diffusers and transformers take
the safetensors weights and never fall back. The tests load such a folder with `torch.load` and
`pickle.load` patched to fail.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from studio.checkpoints import (
    CheckpointFamily,
    FileKind,
    pickle_refusal,
    safetensors_byte_length,
    sniff_weights_file,
)
from studio.errors import ModelLoadError, UnknownModelReferenceError, UnsupportedModelError
from studio.safe_json import JsonError, parse_json

# The pipeline classes our backbone understands, by the `_class_name` in model_index.json.
SUPPORTED_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
COMPONENT_LIBRARIES = ("diffusers", "transformers")  # anything else would import code named by the folder
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
MAX_FOLDER_FILES = 10_000  # a real pipeline folder holds a few dozen files; this bounds a hostile tree
MAX_INDEX_BYTES = 8 * 1024 * 1024  # an SDXL UNet's shard index is about 100 KB


def folder_family(folder: Path) -> CheckpointFamily:
    """SD1.x/2.x or SDXL for a diffusers folder that passes every check in the module docstring."""
    index = _model_index(folder)
    class_name = index.get("_class_name")
    if class_name not in SUPPORTED_PIPELINES:
        raise UnsupportedModelError(
            f"{folder.name}: {class_name or 'unknown'} models are not supported;"
            f" the studio runs {' and '.join(SUPPORTED_PIPELINES)}"
        )
    files = _folder_files(folder)
    for path in files:
        if path.name.endswith(".index.json"):
            _check_shard_index(folder, path)
        elif path.suffix == ".safetensors":
            _require_safetensors(folder, path)
    for component, spec in index.items():
        if component.startswith("_") or not isinstance(spec, list) or not spec or spec[0] is None:
            continue
        _check_component(folder, component, spec)
    return CheckpointFamily.SDXL if class_name == "StableDiffusionXLPipeline" else CheckpointFamily.SD


def _model_index(folder: Path) -> dict[str, Any]:
    path = folder / "model_index.json"
    if not path.is_file():
        raise UnknownModelReferenceError(
            f"unknown model reference {folder.name!r}: the folder is not a diffusers model (no model_index.json)"
        )
    try:
        index = parse_json(
            path.read_bytes()[: MAX_INDEX_BYTES + 1], f"{folder.name}/model_index.json", max_bytes=MAX_INDEX_BYTES
        )
    except JsonError as exc:
        raise UnsupportedModelError(str(exc)) from exc
    if not isinstance(index, dict):
        raise UnsupportedModelError(f"{folder.name}/model_index.json: expected a JSON object")
    return index


def _folder_files(folder: Path) -> list[Path]:
    """Every file under `folder`, following symlinked folders once (the hub cache links every file)."""
    files: list[Path] = []
    seen: set[str] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop, or two links to one folder
            dirs.clear()
            continue
        seen.add(real)
        files.extend(Path(root, name) for name in names)
        if len(files) > MAX_FOLDER_FILES:
            raise UnsupportedModelError(f"{folder.name}: more than {MAX_FOLDER_FILES:,} files; not a model folder")
    return sorted(files)


def _shown(folder: Path, path: Path) -> str:
    return f"{folder.name}/{path.relative_to(folder).as_posix()}"


def _require_safetensors(folder: Path, path: Path) -> None:
    if not path.is_file():
        raise UnsupportedModelError(f"{_shown(folder, path)}: missing, or a link to nothing")
    kind = sniff_weights_file(path)
    if kind in (FileKind.PICKLE, FileKind.TORCH_ZIP):
        raise pickle_refusal(path, kind)
    if kind is not FileKind.SAFETENSORS:
        raise UnsupportedModelError(f"{_shown(folder, path)}: not a safetensors file ({kind.value} content)")
    size, expected = path.stat().st_size, safetensors_byte_length(path)
    if size < expected:
        raise ModelLoadError(f"{_shown(folder, path)}: truncated ({size:,} of {expected:,} bytes); copy it again")


def _check_shard_index(folder: Path, index_path: Path) -> None:
    """An index may name only `.safetensors` shards in its own folder, each one safetensors by content."""
    shown = _shown(folder, index_path)
    if index_path.stat().st_size > MAX_INDEX_BYTES:
        raise UnsupportedModelError(f"{shown}: {index_path.stat().st_size:,} bytes is too large for a shard index")
    try:
        index = parse_json(index_path.read_bytes(), shown)
    except JsonError as exc:
        raise UnsupportedModelError(str(exc)) from exc
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise UnsupportedModelError(f"{shown}: a shard index needs a 'weight_map' object")
    for shard in sorted({str(name) for name in weight_map.values()}):
        if not shard.endswith(".safetensors"):
            raise UnsupportedModelError(
                f"refusing {folder.name}: {shown} names the shard {shard!r}, which is not a .safetensors file;"
                " a loader would unpickle it. The studio only loads safetensors weights"
            )
        path = index_path.parent / shard
        if Path(shard).is_absolute() or not _inside(path, index_path.parent):
            raise UnsupportedModelError(
                f"refusing {folder.name}: {shown} names a shard outside its folder ({shard!r})"
            )
        _require_safetensors(folder, path)


def _inside(path: Path, parent: Path) -> bool:
    return os.path.normpath(path).startswith(os.path.normpath(parent) + os.sep)


def _check_component(folder: Path, component: str, spec: list[Any]) -> None:
    library = spec[0]
    if library not in COMPONENT_LIBRARIES:
        raise UnsupportedModelError(
            f"{folder.name}: component {component!r} comes from {library!r}; the studio loads only diffusers and"
            " transformers components and never runs code a model folder names"
        )
    component_dir = folder / component
    if not component_dir.is_dir():
        return  # tokenizers and schedulers hold no weights; a missing weighted component fails in the loader
    weights = [
        p for p in component_dir.iterdir() if p.is_file() and p.name.endswith((".safetensors", *PICKLE_SUFFIXES))
    ]
    safetensors = [p for p in weights if p.suffix == ".safetensors"]
    pickles = [p for p in weights if p.suffix in PICKLE_SUFFIXES]
    indexes = [p for p in component_dir.iterdir() if p.name.endswith(".safetensors.index.json")]
    if pickles and not safetensors and not indexes:
        kind = sniff_weights_file(pickles[0])
        raise pickle_refusal(pickles[0], kind if kind is FileKind.TORCH_ZIP else FileKind.PICKLE)
