"""Progress events and cooperative cancellation for the pipelines' step loops.

Why: the studio's runner (CLI, UI, batch) shows progress with preview latents and lets a user stop a job.
A pipeline cannot be interrupted safely in the middle of a UNet call, so it checks a flag at every step
boundary and raises `Cancelled`; the attention-control context manager then restores the UNet's
processors on the way out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class StepEvent:
    """What a pipeline reports after each step of a schedule."""

    index: int  # 0-based step within this branch's schedule
    total: int  # number of steps in this branch's schedule
    timestep: int  # scheduler timestep of the step just taken
    latents: Tensor  # (N, C, h, w): one latent per stream (not per CFG row), after the step
    branch: str  # "denoise" or "invert"


StepCallback = Callable[[StepEvent], None]


class Cancelled(Exception):
    """Raised at a step boundary once a `CancelToken` is set; no partial result is returned."""

    def __init__(self, index: int, total: int, branch: str) -> None:
        super().__init__(f"{branch} cancelled before step {index} of {total}")
        self.index = index  # the step that did not run (== total when cancelled after the last step)
        self.total = total
        self.branch = branch


class CancelToken:
    """A thread-safe flag: another thread calls `cancel()`, the step loop calls `check()` between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self, index: int, total: int, branch: str) -> None:
        """Raise `Cancelled` if cancellation was requested; `index` is the step about to run."""
        if self._event.is_set():
            raise Cancelled(index, total, branch)
