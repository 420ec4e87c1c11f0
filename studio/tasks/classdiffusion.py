"""The `classdiffusion` extra control: a file from `studio train classdiffusion` (its token and cross-attention
K/V) used by any task: `--control classdiffusion:file=FILE`; write its token in the prompt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from studio.declarations import ControlDeclaration, Options, WeightPath
from studio.errors import InputError
from studio.job_spec import MAX_PATH


class ClassDiffusionOptions(Options):
    file: Annotated[str, WeightPath(label="ClassDiffusion")] = Field(
        min_length=1, max_length=MAX_PATH, description="File from `studio train classdiffusion`."
    )


def build(options: ClassDiffusionOptions, job: Any, backbone: Any) -> list[Any]:
    return []


@contextlib.contextmanager
def applied(options: ClassDiffusionOptions, job: Any, backbone: Any, index: int) -> Iterator[list[Any]]:
    from pipelines.tuning.classdiffusion_apply import applied_classdiffusion

    try:
        context = applied_classdiffusion(backbone, Path(options.file).expanduser())
        context.__enter__()
    except ValueError as exc:
        raise InputError(f"classdiffusion: {exc}") from None
    try:
        yield []
    finally:
        context.__exit__(None, None, None)


CONTROL = ControlDeclaration(
    kind="classdiffusion",
    summary="A ClassDiffusion concept (new token + cross-attention K/V) from `studio train classdiffusion`.",
    options=ClassDiffusionOptions,
    build=build,
    applied=applied,
)
