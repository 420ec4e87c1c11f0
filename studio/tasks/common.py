"""Small pieces the method tasks share."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from studio.errors import JobSpecError

if TYPE_CHECKING:
    from pipelines.backbone import Backbone
    from studio.declarations import TaskRun
    from studio.jobs import Job


def seed_of(job: Job) -> int:
    return job.seed if job.seed is not None else secrets.randbelow(2**32)


def generator(seed: int) -> Any:
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def size_of(job: Job, backbone: Backbone, fallback: tuple[int, int] | None = None) -> tuple[int, int]:
    """(height, width): the job's, else `fallback`, else the model's default; refused if the model can't."""
    fallback_h, fallback_w = fallback or (None, None)
    try:
        return backbone.resolve_size(job.height or fallback_h, job.width or fallback_w)
    except ValueError as exc:
        raise JobSpecError(f"invalid job for this model: {exc}") from exc


def method_errors(method: str):
    """Turn a pipeline's ValueError (bad mask, too many references, ...) into a clear job error."""
    import contextlib

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except ValueError as exc:
            raise JobSpecError(f"{method}: {exc}") from exc

    return guard()


def hooks(task: TaskRun) -> dict[str, Any]:
    """What every pipeline call of a task passes through: the job's extra controls, progress and cancel."""
    return {"controls": task.controls, "on_step": task.on_step, "cancel": task.cancel}


def sampling(task: TaskRun, seed: int, height: int, width: int) -> dict[str, Any]:
    """The keyword arguments a sampling pipeline (generate, mutual_edit, freecustom) takes from the job."""
    job = task.job
    return {
        "negative_prompt": job.negative_prompt or None,  # None keeps the family's default (SDXL: zeros)
        "num_inference_steps": job.steps,
        "guidance_scale": job.guidance,
        "width": width,
        "height": height,
        "generator": generator(seed),
        **hooks(task),
    }
