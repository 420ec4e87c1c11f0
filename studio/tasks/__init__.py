"""The method tasks a job can name: each turns a validated `Job` into a pipeline call and a `JobResult`.

One file per method. The runner looks tasks up here; the CLI builds the jobs; the option schema of each
method is a dataclass, so a typo in a job file is an error, never a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.jobs import Job


@dataclass(frozen=True)
class MethodTask:
    run: Callable[..., Any]  # (job, backbone, progress, cancel) -> JobResult
    options_key: str  # the key of `Job.options` that holds this method's options
    steps: Callable[[Job], int]  # progress steps the whole job takes, for the ETA


def method_tasks() -> dict[str, MethodTask]:
    from studio.tasks import freecustom, mutual, visctrl

    return {
        "mutual": MethodTask(mutual.run, "mutual", mutual.total_steps),
        "visctrl": MethodTask(visctrl.run, "visctrl", visctrl.total_steps),
        "freecustom": MethodTask(freecustom.run, "freecustom", freecustom.total_steps),
    }
