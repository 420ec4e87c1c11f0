"""The one step loop of every pipeline: denoising with any sampler (txt2img, img2img, reconstruction, the
methods' multi-branch batches) and, with the inverse step, DDIM inversion.

Each step: check cancellation, publish the step state to the attention controls, one guided UNet call on
the batch plan's rows, the step function, the step-end hooks (whose returned latents are adopted), then
the `StepEvent`. The scheduler scales the UNet input (`scale_model_input`: sigma-space samplers such as Euler
divide by sqrt(sigma^2 + 1); DDIM leaves it as is), so every sampler of `pipelines/samplers.py` runs here.
Controls act inside attention; hooks act on the latents between steps (teacher forcing is one, see
`pipelines/teacher.py`), so no method forks the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from diffusers import DDIMScheduler
from torch import Tensor

from attention_processors import BatchLayout, Control, attention_control
from pipelines.backbone import Backbone, PromptEmbeds
from pipelines.batch_plan import BatchPlan
from pipelines.control_loras import applied_unet_loras
from pipelines.events import CancelToken, StepCallback, StepEvent
from pipelines.hooks import StepEnd, StepEndHook, run_hooks
from pipelines.steps import StepFunction, ddim_step
from pipelines.teacher import Teacher, TeacherForcing


def denoise(
    backbone: Backbone,
    latents: Tensor,
    *,
    scheduler: Any,
    timesteps: Sequence[int] | Tensor,
    embeds: PromptEmbeds,
    layout: BatchLayout,
    guidance_scale: float,
    controls: Sequence[Control] = (),
    step: StepFunction = ddim_step,
    branch: str = "denoise",
    on_step_end: Sequence[StepEndHook] = (),
    teacher: Teacher | None = None,
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> Tensor:
    """Run `step` over `timesteps` through the studio's attention processors (default: deterministic DDIM).

    Args:
        latents: (N, C, h, w), one per stream of `layout`, at the noise level of `timesteps[0]`.
        scheduler: the scheduler `step` uses, on which `set_timesteps` was called (a `DDIMScheduler` for
            `ddim_step`; `inverse_ddim_scheduler` for `InverseDDIMStep`; any sampler's for `SchedulerStep`).
        timesteps: the timesteps to run in order (a suffix of `scheduler.timesteps` for img2img; ascending
            for inversion).
        embeds: one prompt (and negative, with CFG) per stream.
        step: the step function (`pipelines/steps.py`): `ddim_step` denoises, `InverseDDIMStep` inverts;
            `pipelines.samplers.step_for` gives any sampler's (with the job's generator for stochastic ones).
        branch: the name the controls' step state, the events and `Cancelled` carry ("denoise", "invert").
        on_step_end: hooks called in order after every step; the loop adopts the latents they return.
        teacher: teacher forcing, a convenience for `TeacherForcing(teacher)` as the first hook (stream s of
            `teacher` starts at its z_T and is overwritten with z_{T-1-i} after step i).

    Returns:
        (N, C, h, w) latents after the last step.
    """
    plan = BatchPlan.of(layout)
    if plan.streams != latents.shape[0]:
        raise ValueError(f"batch layout has {plan.streams} streams but {latents.shape[0]} latents were given")
    total = len(timesteps)
    hooks = list(on_step_end)
    latents = latents.to(backbone.device, backbone.dtype)  # (N, C, h, w)
    if teacher and not isinstance(scheduler, DDIMScheduler):
        raise ValueError(
            f"teacher forcing needs a DDIM scheduler, got {type(scheduler).__name__}: the stored trajectory holds "
            "DDIM's levels, which another sampler's steps do not visit"
        )
    if teacher:
        forcing = TeacherForcing(teacher)
        latents = forcing.start(latents, total)
        hooks.insert(0, forcing)
    schedule = tuple(int(t) for t in timesteps)
    conditioning = backbone.conditioning(embeds, plan.rows, backbone.image_size(latents))
    latent_size = (latents.shape[-2], latents.shape[-1])
    # Controls may carry UNet LoRAs (FaceID's), active while they act: in the denoising branch only.
    loras = controls if branch == "denoise" else ()
    with applied_unet_loras(backbone.unet, loras), attention_control(backbone.unet, controls) as state:
        for i, t in enumerate(timesteps):
            if cancel is not None:
                cancel.check(i, total, branch)
            state.update(index=i, total=total, timestep=int(t), branch=branch, layout=layout, latent_size=latent_size)
            model_input = scheduler.scale_model_input(latents, t)  # (N, C, h, w); DDIM returns `latents` itself
            model_output = plan.predict(backbone, model_input, t, conditioning, guidance_scale)  # (N, C, h, w)
            stepped, pred_x0 = step(scheduler, model_output, t, latents)  # (N, C, h, w) each, one level on
            if hooks:
                end = StepEnd(
                    branch=branch, index=i, total=total, timestep=int(t), timesteps=schedule, sample=latents,
                    model_output=model_output, pred_x0=pred_x0, latents=stepped, plan=plan, scheduler=scheduler,
                )  # fmt: skip
                stepped = run_hooks(hooks, end)
            latents = stepped
            if on_step is not None:
                on_step(StepEvent(index=i, total=total, timestep=int(t), latents=latents, branch=branch))
        if cancel is not None:
            cancel.check(total, total, branch)
    return latents
