"""What every fine-tuning stage does around its optimiser step: the learning-rate schedule, the EMA, the
log line, the report, the timed checkpoint and the time budget.

Why one place: the stages (appearance pairs, the IP-Adapter) differ in what a step computes, not in how a
CPU run is kept safe and readable. A stage runs in the background for most of an hour on a shared machine,
so it checkpoints its EMA every few minutes (a killed run keeps its last checkpoint) and stops itself when
its time budget is spent, with the schedule ending as if the budget were its length.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

WARMUP_STEPS = 100
LOG_EVERY = 25  # steps between log lines, and between the report's loss-curve points


def warm_cosine(step: int, fraction: float) -> float:
    """The learning rate's multiplier: linear warm-up, then a cosine from 1 down to 0.1 over the run."""
    return min(1.0, (step + 1) / WARMUP_STEPS) * (0.1 + 0.45 * (1 + np.cos(np.pi * min(fraction, 1.0))))


class StageProgress:
    """Call `fraction` before a step (how far the run is, by steps or by time) and `after_step` after it."""

    def __init__(self, name: str, ema: nn.Module, params: list[Tensor], *, steps: int, max_seconds: float,
                 log: Callable[[str], None], checkpoint: Callable[[nn.Module, dict], None],
                 checkpoint_seconds: float = 300.0, ema_decay: float = 0.995) -> None:
        self.name, self.ema, self.params, self.steps = name, ema, params, steps
        self.max_seconds, self.log, self.checkpoint = max_seconds, log, checkpoint
        self.checkpoint_seconds, self.ema_decay = checkpoint_seconds, ema_decay
        self.start = self.last_checkpoint = time.time()
        self.history: list[float] = []
        self.extra: dict[str, list[float]] = {}
        self.report: dict = {}

    def fraction(self, step: int) -> float:
        return min(1.0, max(step / self.steps, (time.time() - self.start) / self.max_seconds))

    def after_step(self, step: int, loss: float, **extra: float) -> bool:
        """Update the EMA, log, report and checkpoint; True when the time budget is spent."""
        with torch.no_grad():
            weight = 1 - min(self.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(list(self.ema.parameters()), self.params, weight)
        self.history.append(loss)
        for key, value in extra.items():
            self.extra.setdefault(key, []).append(value)
        elapsed = time.time() - self.start
        if step % LOG_EVERY == 0:
            extras = "".join(f" {k.replace('_', ' ')} {np.mean(v[-100:]):.3f}" for k, v in self.extra.items())
            self.log(f"{self.name} step {step} loss {np.mean(self.history[-100:]):.4f}{extras} ({elapsed:.0f}s)")
        self.report = {"steps": step + 1, "seconds": elapsed, "loss_first": self.history[0],
                       "loss_last100": float(np.mean(self.history[-100:])), "loss_curve": self.history[::LOG_EVERY],
                       **{f"{k}_last100": float(np.mean(v[-100:])) for k, v in self.extra.items()}}
        if time.time() - self.last_checkpoint > self.checkpoint_seconds:
            self.checkpoint(self.ema, self.report)
            self.last_checkpoint = time.time()
        if elapsed > self.max_seconds:
            self.log(f"{self.name}: time budget reached at step {step}")
            return True
        return False
