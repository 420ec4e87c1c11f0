"""The one runner: turn a `Job` into images, for the CLI, the UI and batch alike.

Why: every entry point must produce the same bytes for the same job, report progress the same way and
stop at a step boundary when asked. So they all call `run_job`. It resolves what the job left open
(seed, size) and returns the *resolved* job in its result, which is what gets embedded in the output:
re-running the embedded job reproduces the image.

Models come from a `ModelCache` the caller owns (no global). Determinism: all noise is drawn from one
CPU `torch.Generator` seeded with the job's seed, so a seed means the same noise on every device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from studio.errors import JobCancelledError, JobSpecError, RunError
from studio.jobs import Job
from studio.model_cache import ModelCache
from studio.tasks.common import generator, seed_of, size_of

if TYPE_CHECKING:
    from PIL import Image
    from torch import Tensor

    from pipelines.backbone import Backbone
    from pipelines.events import CancelToken, StepEvent


@dataclass(frozen=True)
class RunEvent:
    """Progress of a job: `phase` is "load", "invert" or "denoise"; steps count across all phases."""

    phase: str
    step: int  # steps completed so far, over the whole job
    total: int  # steps the whole job will take
    eta_s: float | None = None  # estimated seconds left, from the mean step time so far
    latents: Tensor | None = None  # (N, C, h, w) after the step, for previews; None for "load"


EventCallback = Callable[[RunEvent], None]


@dataclass(frozen=True)
class JobResult:
    """What a run made: the images, the resolved job that reproduces them, and measured figures."""

    job: Job
    images: list[Image.Image]
    metrics: dict[str, float] = field(default_factory=dict)


class _Progress:
    """Turns the pipelines' per-branch StepEvents into job-wide RunEvents with an ETA."""

    def __init__(self, total: int, on_event: EventCallback | None) -> None:
        self.total = total
        self.done = 0
        self.on_event = on_event
        self.started = time.monotonic()

    def __call__(self, event: StepEvent) -> None:
        self.done += 1
        if self.on_event is None:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        self.on_event(RunEvent(event.branch, self.done, self.total, eta, event.latents))


def _run_generate(job: Job, backbone: Backbone, progress: _Progress, cancel: CancelToken | None) -> JobResult:
    from pipelines.generate import generate

    seed = seed_of(job)
    height, width = size_of(job, backbone)
    output = generate(
        backbone,
        job.prompt,
        negative_prompt=job.negative_prompt or None,  # None keeps the family's default (SDXL: zeros)
        num_inference_steps=job.steps,
        guidance_scale=job.guidance,
        width=width,
        height=height,
        generator=generator(seed),
        on_step=progress,
        cancel=cancel,
    )
    return JobResult(job.replace(seed=seed, width=width, height=height), list(output.images))


def _run_invert(job: Job, backbone: Backbone, progress: _Progress, cancel: CancelToken | None) -> JobResult:
    from studio.images import open_image
    from studio.reconstruction import invert_and_reconstruct

    assert job.image is not None  # the Job validator guarantees it for this task
    source = open_image(job.image)
    fallback = _floor_size(source.height, source.width, backbone.size_multiple)
    height, width = size_of(job, backbone, fallback)
    reconstruction, metrics = invert_and_reconstruct(
        backbone, source, job, height=height, width=width, on_step=progress, cancel=cancel
    )
    return JobResult(job.replace(width=width, height=height), [reconstruction], metrics)


def _floor_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    return max(multiple, height // multiple * multiple), max(multiple, width // multiple * multiple)


_TASKS = {"generate": _run_generate, "invert": _run_invert}
# Options of the built-in tasks, by top-level key of `Job.options` (method tasks declare theirs in
# `studio.tasks`); an option nobody reads is refused rather than silently ignored.
_TASK_OPTIONS: dict[str, frozenset[str]] = {"generate": frozenset(), "invert": frozenset()}
_STEPS_PER_STEP = {"generate": 1, "invert": 2}  # invert runs the schedule twice: inversion, then reconstruction


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
    import torch

    from pipelines.backbone import Backbone
    from pipelines.events import Cancelled
    from studio.tasks import method_tasks

    methods = method_tasks()
    if job.task in methods:
        method = methods[job.task]
        run_task, allowed, total = method.run, frozenset({method.options_key}), method.steps(job)
    elif job.task in _TASKS:
        run_task, allowed, total = _TASKS[job.task], _TASK_OPTIONS[job.task], job.steps * _STEPS_PER_STEP[job.task]
    else:
        raise JobSpecError(f"task {job.task!r} is not supported by this studio version")
    unused = sorted(set(job.options) - allowed)
    if unused:
        raise JobSpecError(f"invalid job: the {job.task} task does not use option(s) {', '.join(unused)}")
    if on_event is not None:
        on_event(RunEvent("load", 0, total))
    pipe = models.get(job.model)
    try:
        backbone = Backbone.from_pipeline(pipe)
    except TypeError as exc:
        raise RunError(f"{job.model}: {exc}") from exc
    progress = _Progress(total, on_event)
    try:
        return run_task(job, backbone, progress, cancel)
    except Cancelled as exc:
        raise JobCancelledError(f"job cancelled ({exc})") from exc
    except torch.OutOfMemoryError as exc:
        raise RunError(
            f"out of memory running {job.task} at {job.width or 'default'}x{job.height or 'default'};"
            " try a smaller size or --memory vae-tiling / cpu-offload"
        ) from exc
