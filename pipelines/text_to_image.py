"""Text-to-image with any sampler (DDIM by default), through the studio's attention processors."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attention_processors import BatchLayout, Control
from pipelines._denoise import denoise
from pipelines._inputs import Generators, as_list, draw_noise, negatives_for
from pipelines.backbone import Backbone
from pipelines.events import CancelToken, StepCallback
from pipelines.hooks import StepEndHook
from pipelines.ip_adapter import ImagePrompt, image_prompt_control
from pipelines.ip_adapter_faceid import FacePrompt
from pipelines.outputs import GenerationOutput
from pipelines.samplers import DEFAULT_SAMPLER, build_scheduler, step_for
from pipelines.settings import GENERATE, GenerateSettings  # noqa: F401 - re-exported


@torch.no_grad()
def generate(
    backbone: Backbone,
    prompt: str | Sequence[str],
    *,
    negative_prompt: str | Sequence[str] | None = None,
    num_inference_steps: int = GENERATE.steps,
    guidance_scale: float = GENERATE.guidance,
    sampler: str = DEFAULT_SAMPLER,
    width: int | None = None,
    height: int | None = None,
    generator: Generators | None = None,
    latents: Tensor | None = None,
    controls: Sequence[Control] = (),
    image_prompts: Sequence[ImagePrompt | FacePrompt] = (),
    on_step_end: Sequence[StepEndHook] = (),
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> GenerationOutput:
    """Generate one image per prompt.

    Args:
        prompt: one prompt, or a list (one image each; the batch rows are roles "target" 0..N-1).
        negative_prompt: a string for every item, a list (one per item), or None for the family's default
            unconditional input (SD1.x/2.x: the empty prompt; SDXL: zeros), as in diffusers.
        guidance_scale: classifier-free guidance weight; <= 1 runs without CFG (one UNet row per item).
        sampler: a name from `pipelines.samplers` (ours or A1111's: "euler_a" or "Euler a"); the scheduler is
            built from the model's scheduler config for this run. Stochastic samplers draw their per-step noise
            from `generator` after the initial noise (a list: item i's from generator i).
        width, height: pixels, multiples of `backbone.size_multiple`; default `backbone.default_size`.
        generator: draws the initial noise. With a list (one per item), item i equals a single run with
            `generator[i]`; with one generator, item i takes its i-th draw. Unused when `latents` is given.
        latents: (N, C, h, w) initial noise instead of drawing it.
        controls: attention controls applied at every UNet call (empty: plain generation).
        image_prompts: IP-Adapter image prompts and FaceID face prompts, one control for all of them added after
            `controls` (the same as passing `pipelines.ip_adapter.image_prompt_control(backbone, image_prompts)`
            there).
        on_step_end: hooks called in order after every scheduler step, as diffusers' `callback_on_step_end`;
            the loop adopts the latents a hook returns (None keeps them). See `pipelines.hooks.StepEnd`.
        on_step: called with a `StepEvent` after every step (after the hooks: it sees the adopted latents).
        cancel: checked at every step boundary; raises `pipelines.events.Cancelled`.
    """
    # 1. validate
    prompts = as_list(prompt, "prompt")
    negatives = negatives_for(negative_prompt, len(prompts))
    height, width = backbone.resolve_size(height, width)
    latent_h, latent_w = backbone.latent_size(height, width)
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    if latents is None and generator is None:
        raise ValueError("pass a torch.Generator (or one per item) or initial latents: all noise comes from them")
    shape = (backbone.latent_channels, latent_h, latent_w)
    if latents is not None and tuple(latents.shape) != (len(prompts), *shape):
        raise ValueError(f"latents must have shape {(len(prompts), *shape)}, got {tuple(latents.shape)}")
    step = step_for(sampler, generator)
    if image_prompts:
        controls = [*controls, image_prompt_control(backbone, image_prompts)]
    cfg = guidance_scale > 1.0

    # 2. encode
    embeds = backbone.encode_prompts(prompts, negatives, cfg=cfg)

    # 3. prepare latents, layout and schedule
    roles = ["target"] * len(prompts)
    layout = BatchLayout.with_cfg(roles) if cfg else BatchLayout.without_cfg(roles)
    scheduler = build_scheduler(backbone.scheduler_config, sampler)
    scheduler.set_timesteps(num_inference_steps, device=backbone.device)
    if latents is None:
        latents = draw_noise(len(prompts), shape, generator, backbone.device, backbone.dtype)  # (N, C, h, w)
    latents = latents.to(backbone.device, backbone.dtype) * scheduler.init_noise_sigma  # (N, C, h, w)

    # 4. denoise
    latents = denoise(
        backbone,
        latents,
        scheduler=scheduler,
        timesteps=scheduler.timesteps,
        embeds=embeds,
        layout=layout,
        guidance_scale=guidance_scale,
        controls=controls,
        step=step,
        on_step_end=on_step_end,
        on_step=on_step,
        cancel=cancel,
    )  # (N, C, h, w)

    # 5. decode
    images = backbone.latents_to_pil(latents)
    return GenerationOutput(images=images, latents=latents, notes=embeds.notes)
