"""The explicit per-call step state that the pipeline updates before every UNet call.

Why: without it, processors must count their own calls to know the step, which breaks as soon as a
pipeline runs a second branch, skips CFG, or adds ControlNet. One object is shared by the processors of
one installation (never a global), and only the pipeline writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from attention_processors.layout import BatchLayout


@dataclass
class StepState:
    index: int = 0  # denoising (or inversion) step, 0-based
    total: int = 1  # steps in this branch's schedule
    timestep: int = 0  # scheduler timestep of this UNet call
    branch: str = "denoise"  # "denoise", "invert", or a method-specific auxiliary branch
    layout: BatchLayout | None = None
    latent_size: tuple[int, int] | None = None  # (h, w) of the latent this call denoises
    # Called after every `update`, outside the UNet forward: the processors decide there which controls act
    # (so a compiled UNet never branches on the step index), and controls fill their caches there.
    updates: int = 0  # how many times `update` ran (0: nothing published yet, controls are not asked)
    listeners: list[Callable[[StepState], None]] = field(default_factory=list, repr=False, compare=False)

    def update(
        self,
        *,
        index: int,
        total: int,
        timestep: int,
        branch: str = "denoise",
        layout: BatchLayout | None = None,
        latent_size: tuple[int, int] | None = None,
    ) -> None:
        if total < 1 or not 0 <= index < total:
            raise ValueError(f"step index {index} outside a schedule of {total} steps")
        self.index, self.total, self.timestep, self.branch = index, total, int(timestep), branch
        self.layout = layout
        self.latent_size = latent_size
        self.updates += 1
        for listener in list(self.listeners):
            listener(self)

    @property
    def progress(self) -> float:
        """Fraction of the schedule already done; step k of n is k/n."""
        return self.index / self.total
