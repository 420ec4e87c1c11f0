"""`<lora:NAME:SCALE>` tags in a job's prompts, resolved against the user's LoRA folders.

Why: A1111 prompts name LoRAs by file stem; the file lives in a LoRA folder the user configured
(`DIFFUSION_STUDIO_LORA_DIRS`, separated by the platform's path separator). A tag is resolved and its
file checked (safetensors by its bytes; pickle refused, never unpickled) before any model loads, so a
misspelt name fails at once with the folders it searched.

The LoRAs are loaded into the cached pipeline for one run only (diffusers' `load_lora_weights`, each
as its own peft adapter at its scale via `set_adapters`) and unloaded afterwards, so the next job on the
same cached model sees the model's own weights; a scale of 0 gives the model's own bytes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.checkpoints import FileKind, pickle_refusal, sniff_weights_file
from studio.errors import InputError, RunError

if TYPE_CHECKING:
    from studio.jobs import Job

LORA_DIRS_ENV = "DIFFUSION_STUDIO_LORA_DIRS"


@dataclass(frozen=True)
class LoraFile:
    name: str
    scale: float
    path: Path
    adapter: str | None = None  # the peft adapter name; None: studio_lora_<position>


def lora_dirs() -> list[Path]:
    text = os.environ.get(LORA_DIRS_ENV, "")
    return [Path(os.path.expanduser(part)) for part in text.split(os.pathsep) if part.strip()]


def prompt_loras(job: Job) -> list[tuple[str, float]]:
    """The (name, scale) of every LoRA tag in the job's prompt and negative prompt, in order."""
    from pipelines.prompt_syntax import extract_loras

    found = []
    for text in (job.prompt, job.negative_prompt):
        try:
            found += extract_loras(text)[1]
        except ValueError as exc:
            raise InputError(str(exc)) from None
    return found


def check_weights_file(path: Path, label: str) -> Path:
    """`path` if it is a readable safetensors file; a pickle is refused unread, anything else named."""
    if not path.is_file():
        raise InputError(f"{label} file not found: {path}")
    kind = sniff_weights_file(path)
    if kind in (FileKind.PICKLE, FileKind.TORCH_ZIP):
        raise pickle_refusal(path, kind)
    if kind is not FileKind.SAFETENSORS:
        raise InputError(f"{label} {path.name} is not a safetensors file ({kind.value} content)")
    return path


def control_loras(job: Job) -> list[LoraFile]:
    """The LoRA-format files the job's extra controls name (`--lora`, `--residuals`), checked, in order."""
    found = []
    for index, spec in enumerate(job.controls):
        declaration = job.registry.controls.get(spec.kind)
        if declaration is None or not declaration.loads_lora:
            continue
        options = job.registry.control_options(spec, index)
        path = check_weights_file(Path(options.file).expanduser(), spec.kind)
        found.append(LoraFile(path.stem, float(getattr(options, "scale", 1.0)), path, control_adapter(index)))
    return found


def control_adapter(index: int) -> str:
    """The peft adapter name of the file of `job.controls[index]` (LAG finds its residuals by it)."""
    return f"studio_control_{index}"


def resolve_lora(name: str, folders: list[Path]) -> Path:
    """`NAME.safetensors` in the first folder that has it, checked to be safetensors by its bytes."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise InputError(f"LoRA name {name!r}: give a file name without folders, as in <lora:NAME:0.8>")
    for folder in folders:
        path = folder / f"{name}.safetensors"
        if path.is_file():
            kind = sniff_weights_file(path)
            if kind in (FileKind.PICKLE, FileKind.TORCH_ZIP):
                raise pickle_refusal(path, kind)
            if kind is not FileKind.SAFETENSORS:
                raise InputError(f"LoRA {name}: {path.name} is not a safetensors file ({kind.value} content)")
            return path
    searched = ", ".join(str(f) for f in folders) if folders else f"none configured (set {LORA_DIRS_ENV})"
    raise InputError(f"LoRA {name!r}: no {name}.safetensors in the LoRA folders (searched: {searched})")


def resolved_loras(job: Job) -> list[LoraFile]:
    """Every LoRA the job's prompts and extra controls name, each found and checked; else a one-line error."""
    folders = lora_dirs()
    tags = [LoraFile(name, scale, resolve_lora(name, folders)) for name, scale in prompt_loras(job)]
    return tags + control_loras(job)


@contextlib.contextmanager
def applied_loras(pipe: Any, loras: list[LoraFile]) -> Iterator[None]:
    """`pipe` with the LoRAs loaded at their scales for the duration of the block, then unloaded."""
    if not loras:
        yield
        return
    if not hasattr(pipe, "load_lora_weights"):
        raise RunError(f"this model ({type(pipe).__name__}) cannot load LoRA weights")
    loaded = False
    try:
        names = []
        for index, lora in enumerate(loras):
            name = lora.adapter or f"studio_lora_{index}"
            try:
                pipe.load_lora_weights(str(lora.path.parent), weight_name=lora.path.name, adapter_name=name)
            except (ValueError, KeyError, RuntimeError, OSError) as exc:
                raise InputError(f"LoRA {lora.name}: {lora.path.name} does not fit this model ({exc})") from exc
            loaded = True
            names.append(name)
        pipe.set_adapters(names, [lora.scale for lora in loras])
        yield
    finally:
        if loaded:
            pipe.unload_lora_weights()
