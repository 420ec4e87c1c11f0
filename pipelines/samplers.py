"""Sampler names -> diffusers schedulers, and the step function that runs any of them in the one loop.

Why a table: users know samplers by AUTOMATIC1111's names ("Euler a", "DPM++ 2M Karras"); diffusers knows
scheduler classes and config flags. Each run builds a fresh scheduler from the model's own scheduler config
(betas, prediction type, spacing), so the model's `pipe.scheduler` is never replaced or mutated.

DPM++ SDE: diffusers' `DPMSolverSDEScheduler` needs torchsde and draws its Brownian noise from its own seed,
not from the job's `torch.Generator`; the studio uses `DPMSolverMultistepScheduler` with
`algorithm_type="sde-dpmsolver++"` (A1111's "DPM++ 2M SDE"), whose noise comes from the job's generator, so
the same seed gives the same bytes. "DPM++ SDE" and "DPM++ 2M SDE" both name it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)
from torch import Generator, Tensor

from pipelines._inputs import Generators
from pipelines.sampler_names import A1111_NAMES, DEFAULT_SAMPLER, canonical_sampler, sampler_names
from pipelines.steps import StepFunction, as_epsilon, ddim_step

__all__ = ["DEFAULT_SAMPLER", "SAMPLERS", "Sampler", "build_scheduler", "require_ddim", "resolve_sampler",
           "sampler_names", "step_for"]


@dataclass(frozen=True)
class Sampler:
    name: str  # canonical name
    a1111: str  # AUTOMATIC1111's display name
    scheduler_class: type
    overrides: Mapping[str, Any] = field(default_factory=dict)  # config flags on top of the model's config
    stochastic: bool = False  # draws noise at every step (from the job's generator)


SAMPLERS: Mapping[str, Sampler] = MappingProxyType(
    {
        s.name: s
        for s in (
            Sampler("ddim", A1111_NAMES["ddim"], DDIMScheduler),
            Sampler("euler", A1111_NAMES["euler"], EulerDiscreteScheduler),
            Sampler("euler_a", A1111_NAMES["euler_a"], EulerAncestralDiscreteScheduler, stochastic=True),
            Sampler("dpmpp_2m", A1111_NAMES["dpmpp_2m"], DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
            Sampler(
                "dpmpp_2m_karras",
                A1111_NAMES["dpmpp_2m_karras"],
                DPMSolverMultistepScheduler,
                {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
            ),
            Sampler(
                "dpmpp_sde",
                A1111_NAMES["dpmpp_sde"],
                DPMSolverMultistepScheduler,
                {"algorithm_type": "sde-dpmsolver++"},
                stochastic=True,
            ),
            Sampler("unipc", A1111_NAMES["unipc"], UniPCMultistepScheduler),
            Sampler("lcm", A1111_NAMES["lcm"], LCMScheduler, stochastic=True),
        )
    }
)


def resolve_sampler(name: str) -> Sampler:
    """The sampler named `name` (canonical, e.g. "dpmpp_2m_karras", or A1111's, e.g. "DPM++ 2M Karras")."""
    return SAMPLERS[canonical_sampler(name)]


INVERSION_NEEDS_DDIM = "DDIM inversion needs the deterministic DDIM update to retrace its trajectory"


def require_ddim(name: str, method: str, why: str = INVERSION_NEEDS_DDIM) -> None:
    """Refuse a non-DDIM sampler, in one line that says which method needs DDIM and why."""
    sampler = resolve_sampler(name)
    if sampler.name != "ddim":
        raise ValueError(f"{method} needs the DDIM sampler, got {sampler.a1111!r}: {why}")


def build_scheduler(config: Mapping[str, Any], name: str) -> Any:
    """A fresh scheduler for sampler `name` from a model's scheduler config (betas, prediction type, spacing)."""
    sampler = resolve_sampler(name)
    return sampler.scheduler_class.from_config(dict(config), **sampler.overrides)


@dataclass(frozen=True)
class SchedulerStep:
    """The loop's step function for any diffusers scheduler: `scheduler.step`, with the job's generator for
    samplers that draw noise each step (so the same seed gives the same bytes), and the predicted x0 for the
    step-end hooks (read from the scheduler's output, or computed from the model output when it gives none).
    """

    generator: Generators | None = None

    def __call__(
        self, scheduler: Any, model_output: Tensor, timestep: Tensor | int, sample: Tensor
    ) -> tuple[Tensor, Tensor]:
        kwargs = {}
        if "generator" in inspect.signature(scheduler.step).parameters:
            one = self.generator is None or isinstance(self.generator, Generator)
            kwargs["generator"] = self.generator if one else list(self.generator)  # a list: one per stream
        out = scheduler.step(model_output, timestep, sample, return_dict=True, **kwargs)
        pred_x0 = getattr(out, "pred_original_sample", None)
        if pred_x0 is None:
            pred_x0 = getattr(out, "denoised", None)
        if pred_x0 is None:
            pred_x0 = _vp_pred_x0(scheduler, model_output, timestep, sample)
        return out.prev_sample, pred_x0  # (N, C, h, w) each


def _vp_pred_x0(scheduler: Any, model_output: Tensor, timestep: Tensor | int, sample: Tensor) -> Tensor:
    """x0 of a variance-preserving sample (DPM-Solver, UniPC), read after `step` advanced `step_index`.

    The level is the scheduler's own sigma of the step just taken (Karras sigmas sit between training
    timesteps), alpha_bar = 1 / (1 + sigma^2); without sigmas, the training table at `timestep`.
    """
    sigmas, index = getattr(scheduler, "sigmas", None), getattr(scheduler, "step_index", None)
    if sigmas is not None and index is not None:
        alpha_prod = 1.0 / (1.0 + sigmas[index - 1].to(sample.device, sample.dtype) ** 2)
    else:
        alpha_prod = scheduler.alphas_cumprod[int(timestep)].to(sample.device, sample.dtype)
    prediction_type = scheduler.config.get("prediction_type", "epsilon")
    if prediction_type == "sample":
        return model_output
    eps = as_epsilon(model_output, sample, alpha_prod, prediction_type)  # (N, C, h, w)
    return (sample - (1 - alpha_prod).sqrt() * eps) / alpha_prod.sqrt()  # (N, C, h, w)


def step_for(name: str, generator: Generators | None) -> StepFunction:
    """The step function of sampler `name`: DDIM keeps the loop's exact `ddim_step`; others `SchedulerStep`."""
    sampler = resolve_sampler(name)
    if sampler.name == "ddim":
        return ddim_step
    if sampler.stochastic and generator is None:
        raise ValueError(f"sampler {sampler.a1111!r} draws noise at every step: pass a torch.Generator")
    return SchedulerStep(generator)
