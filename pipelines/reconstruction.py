"""Regenerate inverted images from x_T, free-running or teacher-forced onto the inversion trajectory.

Why: free-running reconstruction measures how good an inversion is; teacher forcing is MasaCtrl's fix for
poor reconstruction (the source row is overwritten with the stored trajectory at every step), and the
same loop with a partly forced batch is what real-image editing methods run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attention_processors import BatchLayout, Control
from attention_processors.uniform_attention import UniformCrossAttention
from pipelines._denoise import denoise
from pipelines._inputs import as_list, negatives_for
from pipelines.backbone import Backbone
from pipelines.events import CancelToken, StepCallback
from pipelines.hooks import StepEndHook
from pipelines.outputs import GenerationOutput, Inversion
from pipelines.samplers import DEFAULT_SAMPLER, require_ddim
from pipelines.settings import RECONSTRUCT, ReconstructSettings  # noqa: F401 - re-exported


@torch.no_grad()
def reconstruct(
    backbone: Backbone,
    inversion: Inversion,
    prompt: str | Sequence[str] = "",
    *,
    negative_prompt: str | Sequence[str] | None = None,
    guidance_scale: float = RECONSTRUCT.guidance,
    teacher_forcing: bool = False,
    sampler: str = DEFAULT_SAMPLER,
    uniform: bool = False,
    controls: Sequence[Control] = (),
    on_step_end: Sequence[StepEndHook] = (),
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> GenerationOutput:
    """Denoise `inversion.x_T` with DDIM over the inversion's own schedule.

    Args:
        prompt: one for all items or one per item; use the inversion's prompt to measure inversion quality.
        guidance_scale: CFG weight; <= 1 runs without uncond rows.
        teacher_forcing: overwrite every item with its stored trajectory after each step, so the output is
            the inverted latents z_0 exactly (the rows still run through the UNet and the controls). The
            forcing is the first step-end hook (`pipelines.teacher.TeacherForcing`); `on_step_end` run after it.
        sampler: must be DDIM: the inversion's levels are DDIM's, and teacher forcing replays them.
        uniform: every cross-attention output is the mean of the text values, as in a uniform inversion
            (`invert(..., uniform=True)`); the caller's controls act after it.
        Other arguments: as `pipelines.text_to_image.generate`; the batch rows have role "source".
    """
    # 1. validate
    require_ddim(sampler, "reconstruction of a DDIM inversion")
    count = inversion.x_T.shape[0]
    prompts = as_list(prompt, "prompt")
    prompts = prompts * count if len(prompts) == 1 else prompts
    if len(prompts) != count:
        raise ValueError(f"got {len(prompts)} prompts for an inversion of {count} items")
    negatives = negatives_for(negative_prompt, count)
    cfg = guidance_scale > 1.0

    # 2. encode
    embeds = backbone.encode_prompts(prompts, negatives, cfg=cfg)

    # 3. prepare latents, layout and schedule
    roles = ["source"] * count
    layout = BatchLayout.with_cfg(roles) if cfg else BatchLayout.without_cfg(roles)
    scheduler = backbone.ddim_scheduler()
    scheduler.set_timesteps(inversion.num_inference_steps, device=backbone.device)
    if [int(t) for t in scheduler.timesteps] != inversion.timesteps:
        raise ValueError("the inversion was made with a different scheduler configuration than this backbone's")
    teacher = {i: inversion.stream(i) for i in range(count)} if teacher_forcing else None

    # 4. denoise
    latents = denoise(
        backbone,
        inversion.x_T,
        scheduler=scheduler,
        timesteps=scheduler.timesteps,
        embeds=embeds,
        layout=layout,
        guidance_scale=guidance_scale,
        controls=[UniformCrossAttention(), *controls] if uniform else controls,
        on_step_end=on_step_end,
        teacher=teacher,
        on_step=on_step,
        cancel=cancel,
    )  # (N, C, h, w)

    # 5. decode
    images = backbone.latents_to_pil(latents)
    return GenerationOutput(images=images, latents=latents)
