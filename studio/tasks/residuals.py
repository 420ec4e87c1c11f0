"""The `residuals` extra control: personalized residuals from `studio train residuals`, everywhere or localised
with LAG: `--residuals FILE [--lag]` or `--control residuals:file=FILE,lag=true`.

Everywhere, the residuals are a LoRA on the blocks' proj_out and load with the job's LoRAs. With LAG each block's
residual applies only where the identifier and class tokens (named in the file's header) attend; the prompt
must contain both words.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from pipelines.tuning.settings import LAG
from studio.declarations import ControlDeclaration, Options, Shortcut, WeightPath, setting
from studio.errors import InputError
from studio.job_spec import MAX_PATH


class ResidualsOptions(Options):
    file: Annotated[str, WeightPath(label="residuals")] = Field(
        min_length=1, max_length=MAX_PATH, description="Residuals file from `studio train residuals`."
    )
    lag: bool = Field(False, description="Localized attention-guided sampling: residuals only where the concept is.")
    threshold: float = setting(LAG, "threshold")


def build(options: ResidualsOptions, job: Any, backbone: Any) -> list[Any]:
    return []


@contextlib.contextmanager
def applied(options: ResidualsOptions, job: Any, backbone: Any, index: int) -> Iterator[list[Any]]:
    if not options.lag:
        yield []
        return
    from pipelines.prompt_syntax import extract_loras
    from pipelines.tuning.files import recipe_of
    from pipelines.tuning.lag import lag_residuals
    from studio.loras import control_adapter

    recipe = recipe_of(Path(options.file).expanduser()) or {}
    if recipe.get("recipe") != "residuals" or not recipe.get("token") or not recipe.get("class"):
        raise InputError(f"--lag needs a residuals file made by `studio train residuals`: {options.file}")
    prompt = extract_loras(job.prompt)[0]
    try:
        with lag_residuals(
            backbone,
            prompt,
            recipe["token"],
            recipe["class"],
            adapter=control_adapter(index),
            threshold=options.threshold,
        ) as controls:
            yield controls
    except ValueError as exc:
        if "LAG needs" in str(exc) or "no residuals" in str(exc):
            raise InputError(str(exc)) from None
        raise


CONTROL = ControlDeclaration(
    kind="residuals",
    summary="Personalized residuals from `studio train residuals`, optionally localised with LAG.",
    options=ResidualsOptions,
    build=build,
    applied=applied,
    loads_lora=True,
    shortcut=Shortcut(
        primary="file",
        flags={"file": "--residuals", "lag": "--lag"},
        help={
            "file": "Personalized residuals file from `studio train residuals`.",
            "lag": "Localise the residuals with LAG (where the concept's tokens attend).",
        },
    ),
)
