"""What a run reports while it runs (`RunEvent`) and what it made (`JobResult`).

Why a module of their own: the runner and every task's run function use them, so they sit below both
and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image
    from torch import Tensor

    from studio.job_spec import JobSpec as Job


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
    """What a run made: the images, the resolved job that reproduces them, and measured figures.

    A batch (several images from one job) also has `image_jobs`: image i's own job, which re-makes it
    alone, embedded in its file; `job` is the batch's, embedded in the grid. `notes` are for the user
    (e.g. a prompt truncated beyond the encoder's chunk limit).
    """

    job: Job
    images: list[Image.Image]
    metrics: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    image_jobs: list[Job] | None = None
