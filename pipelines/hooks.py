"""Step-end hooks: how a method acts on the latents between steps of the one denoising loop.

Why: controls act inside attention, but some methods act on the latents themselves between steps
(teacher forcing, RAG's hard binding and repainting, uniform attention's x̂0 mixing). Rather than forking
the loop for each, the loop calls a list of hooks after every step, as diffusers' `callback_on_step_end`:
after the scheduler step, with the step index, the timestep and the latents, and it adopts the latents a
hook returns (None keeps them). Hooks run in order, each seeing the latents the previous one returned, and
all before the step's `StepEvent` is reported, so progress shows the adopted latents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor

from pipelines.batch_plan import BatchPlan


@dataclass(frozen=True)
class StepEnd:
    """What a step-end hook sees after step `index` of the loop. Every tensor is per stream, (N, C, h, w).

    The latent levels depend on the branch: denoising steps from the level of `timestep` one level down
    (to `timesteps[index + 1]`'s level, or the clean end after the last step); inversion ("invert", the
    timesteps ascending) steps from one level below `timestep` up to the level of `timestep`.
    """

    branch: str  # "denoise" or "invert"
    index: int  # 0-based step within this loop
    total: int  # steps in this loop
    timestep: int  # the timestep the UNet was given at this step
    timesteps: tuple[int, ...]  # the loop's whole schedule, in the order it runs
    sample: Tensor  # the latents the step started from
    model_output: Tensor  # the guided UNet output per stream, in the model's prediction type (eps, v or x0)
    pred_x0: Tensor  # the step's predicted clean latents
    latents: Tensor  # the latents after the step and after the hooks before this one; never edit in place
    plan: BatchPlan  # which stream is which (role, item): `plan.keys`, `plan.streams_of(role)`, `plan.layout`
    scheduler: Any  # the scheduler the step used (the run's sampler; DDIMInverseScheduler for "invert")


StepEndHook = Callable[[StepEnd], Tensor | None]
"""Returns new latents (same shape as `StepEnd.latents`) for the loop to adopt, or None to keep them."""


def run_hooks(hooks: Sequence[StepEndHook], end: StepEnd) -> Tensor:
    """Call `hooks` in order, each on the latents the previous one returned; the latents the loop adopts."""
    latents = end.latents
    for hook in hooks:
        returned = hook(end if latents is end.latents else replace(end, latents=latents))
        if returned is None:
            continue
        if returned.shape != latents.shape:
            raise ValueError(
                f"step-end hook {hook!r} returned latents {tuple(returned.shape)}; expected {tuple(latents.shape)}"
            )
        latents = returned
    return latents


class LatentRecorder:
    """A hook that keeps every step's adopted latents (put it last) and changes nothing: a trajectory."""

    def __init__(self, into: list[Tensor]) -> None:
        self.into = into

    def __call__(self, end: StepEnd) -> None:
        self.into.append(end.latents)
