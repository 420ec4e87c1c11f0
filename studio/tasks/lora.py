"""The `lora` extra control: a LoRA file (diffusers, kohya or A1111 keys, .safetensors) added to any task with
`--lora FILE[:SCALE]` or `--control lora:file=FILE,scale=S`.

The file is checked by its bytes before any model loads (pickle refused unread) and loaded by the runner with
the prompt's `<lora:NAME:SCALE>` tags, through diffusers' `load_lora_weights` (which converts kohya keys),
for this run only. Its content hash is recorded in the output's job, so `studio run` refuses another file.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from pipelines.tuning.settings import APPLY
from studio.declarations import ControlDeclaration, Options, Shortcut, WeightPath, setting
from studio.job_spec import MAX_PATH


class LoraOptions(Options):
    file: Annotated[str, WeightPath(label="LoRA")] = Field(
        min_length=1, max_length=MAX_PATH, description="LoRA weights (.safetensors)."
    )
    scale: float = setting(APPLY, "scale")


def build(options: LoraOptions, job: Any, backbone: Any) -> list[Any]:
    return []  # weights, not an attention control: the runner loads the file (studio.loras.control_loras)


CONTROL = ControlDeclaration(
    kind="lora",
    summary="A LoRA file (e.g. from `studio train lora`) at a scale.",
    options=LoraOptions,
    build=build,
    loads_lora=True,
    shortcut=Shortcut(
        primary="file",
        flags={"file": "--lora"},
        suffix="scale",
        help={"file": "Add a LoRA file (repeatable): FILE or FILE:SCALE."},
    ),
)
