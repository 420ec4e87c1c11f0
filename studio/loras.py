"""`<lora:NAME:SCALE>` tags in a job's prompts, resolved against the user's LoRA folders.

Why: A1111 prompts name LoRAs by file stem; the file lives in a LoRA folder the user configured
(`DIFFUSION_STUDIO_LORA_DIRS`, separated by the platform's path separator). A tag is resolved and its
file checked (safetensors by its bytes; pickle refused, never unpickled) before any model loads, so a
misspelt name fails at once with the folders it searched.

Loading LoRA weights into the UNet is not part of this studio yet: a job whose prompt names a LoRA
that resolves is refused with a line saying so, rather than run silently without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from studio.checkpoints import FileKind, pickle_refusal, sniff_weights_file
from studio.errors import InputError

if TYPE_CHECKING:
    from studio.jobs import Job

LORA_DIRS_ENV = "DIFFUSION_STUDIO_LORA_DIRS"


@dataclass(frozen=True)
class LoraFile:
    name: str
    scale: float
    path: Path


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
    """Every LoRA the job's prompts name, each found and checked; raises a one-line error otherwise."""
    folders = lora_dirs()
    return [LoraFile(name, scale, resolve_lora(name, folders)) for name, scale in prompt_loras(job)]


def check_loras(job: Job) -> None:
    """Refuse, before any model loads, a job whose prompt names LoRAs: missing ones by name, found ones
    because this studio cannot load LoRA weights yet."""
    loras = resolved_loras(job)
    if loras:
        names = ", ".join(f"{lora.name} ({lora.path.name}, scale {lora.scale:g})" for lora in loras)
        raise InputError(
            f"the prompt names LoRA {names}: loading LoRA weights lands with the tuning work;"
            " remove the <lora:...> tag to run without it"
        )
