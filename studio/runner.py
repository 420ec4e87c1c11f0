"""The one runner: turn a `Job` into images, for the CLI, the UI and batch alike.

Why: every entry point must produce the same bytes for the same job, report progress the same way and
stop at a step boundary when asked. So they all call `run_job`. It looks the job's task up in the
registry the job was validated against, builds the job's extra controls, and calls the task's run
function. Tasks resolve what the job left open (seed, size) and return the *resolved* job in their
result, which is what gets embedded in the output: re-running the embedded job reproduces the image.

Models come from a `ModelCache` the caller owns (no global). Determinism: all noise is drawn from one
CPU `torch.Generator` seeded with the job's seed, so a seed means the same noise on every device.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from studio.declarations import TaskRun
from studio.errors import JobCancelledError, RunError
from studio.input_hashes import checked_input_hashes
from studio.jobs import Job
from studio.loras import applied_loras, resolved_loras
from studio.model_cache import ModelCache
from studio.results import EventCallback, JobResult, RunEvent

if TYPE_CHECKING:
    from pipelines.events import CancelToken, StepEvent

__all__ = ["EventCallback", "JobResult", "RunEvent", "run_job"]


class _Progress:
    """Turns the pipelines' per-branch StepEvents into job-wide RunEvents with an ETA."""

    def __init__(self, total: int, on_event: EventCallback | None) -> None:
        self.total = total
        self.done = 0
        self.on_event = on_event
        self.started = time.monotonic()
        self.first_step_s: float | None = None  # wall time to the first step: torch.compile's cost under --compile

    def __call__(self, event: StepEvent) -> None:
        self.done += 1
        if self.first_step_s is None:
            self.first_step_s = time.monotonic() - self.started
        if self.on_event is None:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        self.on_event(RunEvent(event.branch, self.done, self.total, eta, event.latents))


def run_job(
    job: Job,
    models: ModelCache,
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
) -> JobResult:
    """Run `job` with a pipeline from `models`; report `RunEvent`s; stop at a step boundary on `cancel`.

    Raises `JobCancelledError` when cancelled, `JobSpecError` when the job does not fit the model, and the
    model-reference/loading errors of `ModelCache.get`.
    """
    registry = job.registry
    task = registry.task(job.task)
    options = registry.task_options(job)
    total = task.steps(job, options)
    hashes = checked_input_hashes(job)  # before any model loads: a changed input is refused at once
    loras = resolved_loras(job)  # likewise a LoRA tag naming no file
    if on_event is not None:
        on_event(RunEvent("load", 0, total))
    pipe = models.get(job.model)
    progress = _Progress(total, on_event)
    with applied_loras(pipe, loras):  # for this run only: the cached model is itself again afterwards
        result = _run_loaded(job, pipe, options, progress, cancel)
    if models.policy.compile and progress.first_step_s is not None:
        note = f"--compile: first step took {progress.first_step_s:.1f} s (compilation happens on a model's first run)"
        result = replace(result, notes=(*result.notes, note))
    image_jobs = [j.replace(inputs=hashes) for j in result.image_jobs] if result.image_jobs else None
    return replace(result, job=result.job.replace(inputs=hashes), image_jobs=image_jobs)


def _run_loaded(job: Job, pipe: Any, options: Any, progress: _Progress, cancel: CancelToken | None) -> JobResult:
    """Build the backbone and the extra controls on the loaded pipeline, and call the task."""
    from pipelines.backbone import Backbone

    registry = job.registry
    try:
        backbone = Backbone.from_pipeline(pipe)
    except TypeError as exc:
        raise RunError(f"{job.model}: {exc}") from exc
    controls = []
    with contextlib.ExitStack() as applied:  # controls that change the model for this run are undone on exit
        for index, spec in enumerate(job.controls):
            declaration = registry.control(spec.kind)
            control_options = registry.control_options(spec, index)
            controls += declaration.build(control_options, job, backbone)
            if declaration.applied is not None:
                controls += applied.enter_context(declaration.applied(control_options, job, backbone, index))
        return _run_task(job, options, backbone, controls, progress, cancel)


def _run_task(job: Job, options: Any, backbone: Any, controls: list, progress: _Progress, cancel: Any) -> JobResult:
    import torch

    from pipelines.events import Cancelled

    registry = job.registry
    try:
        return registry.task(job.task).run(TaskRun(job, options, backbone, controls, progress, cancel))
    except Cancelled as exc:
        raise JobCancelledError(f"job cancelled ({exc})") from exc
    except torch.OutOfMemoryError as exc:
        raise RunError(
            f"out of memory running {job.task} at {job.width or 'default'}x{job.height or 'default'};"
            " try a smaller size or --memory vae-tiling / cpu-offload"
        ) from exc
