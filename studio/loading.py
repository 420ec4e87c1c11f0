"""Load a resolved model reference into a diffusers pipeline, safetensors only.

Why: the four reference kinds load differently (folder or hub through `from_pretrained`, a checkpoint
through `from_single_file`), but every pipeline the studio hands out must look the same: weights read
only from safetensors (`use_safetensors=True`), the model's own scheduler left as it ships (each run
builds the sampler it needs from its config), diffusers' own progress bars off (the studio reports
progress itself), and the device/memory policy applied. Errors from the hub or diffusers are turned into
one-line `StudioError`s here; their cause stays chained for `--debug`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from studio.checkpoints import CheckpointFamily
from studio.devices import DevicePolicy, place_pipeline
from studio.errors import ModelLoadError, StudioError, UnknownModelReferenceError, UnsupportedModelError
from studio.model_folder import SUPPORTED_PIPELINES, folder_family
from studio.model_refs import ModelKind, ModelRef

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _pipeline_class(family: CheckpointFamily | None) -> type[DiffusionPipeline]:
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    if family is CheckpointFamily.SDXL:
        return StableDiffusionXLPipeline
    if family is CheckpointFamily.SD:
        return StableDiffusionPipeline
    return DiffusionPipeline


@contextlib.contextmanager
def _safetensors_named(path: Path) -> Iterator[Path]:
    """Yield a path ending in `.safetensors` for a file already sniffed as safetensors.

    diffusers picks its reader by extension, so a safetensors file named `.ckpt` would reach
    `torch.load`. A symlink with the right suffix routes it to the safetensors reader instead.
    """
    if path.suffix == ".safetensors":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="studio-ckpt-") as folder:
        link = Path(folder) / f"{path.stem}.safetensors"
        os.symlink(path, link)
        yield link


def _load_single_file(ref: ModelRef, dtype: object, config: str | None) -> DiffusionPipeline:
    cls = _pipeline_class(ref.family)
    kwargs: dict[str, object] = {"dtype": dtype, "local_files_only": _hub_offline()}
    if config is not None:
        kwargs["config"] = config
    if ref.family is CheckpointFamily.SD:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    with _safetensors_named(Path(ref.location)) as path:
        try:
            return cls.from_single_file(str(path), **kwargs)
        except Exception as exc:  # diffusers/hub raise many types; all mean "could not load"
            hint = ""
            if config is None and _hub_offline():
                hint = " (a single-file checkpoint needs its base model's config from the hub cache; hub is offline)"
            raise ModelLoadError(f"could not load {Path(ref.location).name}: {_first_line(exc)}{hint}") from exc


def _hub_folder(ref: ModelRef) -> tuple[str, CheckpointFamily]:
    """Download (or find in the cache) a hub model's files, then check them as a local folder is checked.

    Why: a hub repository is as untrusted as a folder on disk, and its shard index could name a pickle
    shard that diffusers would `torch.load`. Downloading first lets `folder_family` read every file a
    loader could touch before `from_pretrained` sees any of them.
    """
    from diffusers import DiffusionPipeline

    try:
        location = DiffusionPipeline.download(ref.location, use_safetensors=True, local_files_only=_hub_offline())
    except Exception as exc:  # noqa: BLE001 - converted to a one-line error, cause chained for --debug
        where = "offline and not in the local cache" if _hub_offline() else _first_line(exc)
        raise UnknownModelReferenceError(
            f"unknown model reference {ref.text!r}: not a local folder, .safetensors file, or reachable hub id"
            f" ({where})"
        ) from exc
    return str(location), folder_family(Path(location))


def _load_pretrained(ref: ModelRef, dtype: object) -> DiffusionPipeline:
    from pipelines.pretrained import read_pretrained

    location, family = ref.location, ref.family
    if ref.kind is ModelKind.HUB:
        location, family = _hub_folder(ref)
    # read_pretrained passes use_safetensors=True: diffusers and transformers take the safetensors weights
    # and never fall back to pickle; folder_family has already checked every file they could read.
    kwargs: dict[str, object] = {"dtype": dtype}
    if family is CheckpointFamily.SD:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        return read_pretrained(location, _pipeline_class(family), **kwargs)
    except Exception as exc:  # noqa: BLE001 - converted to a one-line error, cause chained for --debug
        raise ModelLoadError(f"could not load {Path(ref.location).name}: {_first_line(exc)}") from exc


def load_pipeline(ref: ModelRef, policy: DevicePolicy, *, single_file_config: str | None = None) -> DiffusionPipeline:
    """Load `ref` as an SD1.x/2.x or SDXL text-to-image pipeline, placed per `policy`."""
    from pipelines.pretrained import quiet_progress

    if ref.kind is ModelKind.SINGLE_FILE:
        pipe = _load_single_file(ref, policy.dtype, single_file_config)
    else:
        pipe = _load_pretrained(ref, policy.dtype)
    if type(pipe).__name__ not in SUPPORTED_PIPELINES:
        raise UnsupportedModelError(
            f"{ref.text}: {type(pipe).__name__} models are not supported; the studio runs"
            f" {' and '.join(SUPPORTED_PIPELINES)}"
        )
    try:
        return place_pipeline(quiet_progress(pipe), policy)
    except StudioError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"could not place {ref.text} on {policy.device}: {_first_line(exc)}") from exc
