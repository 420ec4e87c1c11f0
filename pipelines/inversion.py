"""DDIM inversion: the one shared service that maps real images to the noise that regenerates them.

Why: MasaCtrl, VisCtrl and Uniform Attention Maps edit a real image by inverting it with deterministic
DDIM, then denoising from x_T with the source row teacher-forced onto the stored trajectory (MasaCtrl,
arXiv 2304.08465; VisCtrl, arXiv 2406.06258). This returns that whole trajectory. As in their official codes,
CFG during inversion is optional (`guidance_scale > 1`). Unlike them it reads the VAE scale from config
(SDXL works), uses the model's prediction type (v-prediction SD2.x works), and runs the UNet through the
studio's processors with the caller's controls, so an inversion-time control plugs in without a second
code path: uniform attention maps (`uniform=True`) is one.
"""

from __future__ import annotations

from collections.abc import Sequence

import PIL.Image
import torch
from torch import Tensor

from attention_processors import BatchLayout, Control
from attention_processors.uniform_attention import UniformCrossAttention
from pipelines._denoise import denoise
from pipelines._inputs import Generators, as_list, negatives_for
from pipelines.backbone import Backbone
from pipelines.events import CancelToken, StepCallback
from pipelines.hooks import LatentRecorder, StepEndHook
from pipelines.outputs import Inversion
from pipelines.samplers import DEFAULT_SAMPLER, require_ddim
from pipelines.steps import InverseDDIMStep, inverse_ddim_scheduler


@torch.no_grad()
def invert(
    backbone: Backbone,
    image_or_latents: PIL.Image.Image | Sequence[PIL.Image.Image] | Tensor,
    prompt: str | Sequence[str] = "",
    *,
    num_inference_steps: int,
    guidance_scale: float = 1.0,
    negative_prompt: str | Sequence[str] | None = None,
    width: int | None = None,
    height: int | None = None,
    generator: Generators | None = None,
    sampler: str = DEFAULT_SAMPLER,
    uniform: bool = False,
    controls: Sequence[Control] = (),
    on_step_end: Sequence[StepEndHook] = (),
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> Inversion:
    """Invert images (or their scaled latents) with deterministic DDIM over a `num_inference_steps` schedule.

    This is the one denoising loop run upwards with the inverse step (`pipelines.steps.InverseDDIMStep`):
    step i evaluates the UNet on z_i at the *next* timestep t and moves z_i one DDIM level up (the usual
    approximation eps(z_{i+1}, t) ~ eps(z_i, t)), with `DDIMInverseScheduler` built from the model's own
    scheduler config so the levels are exactly those the DDIM denoising loop comes back down. A v- or
    x0-prediction output is read as noise at the level of t, as the denoising step reads it.

    Args:
        image_or_latents: a PIL image or a list of them (resized to height x width, which default to the
            first image's size), or scaled latents (N, C, h, w) such as `Backbone.encode_images` returns.
        prompt: the source prompt, one for all items or one per item. "" is the usual choice.
        guidance_scale: CFG weight during inversion; <= 1 inverts with the prompt only (no uncond rows).
        negative_prompt: the uncond input under CFG; None is the family default (see `generate`).
        generator: unused by deterministic DDIM inversion; accepted so callers can hand every pipeline the
            job's generator, and so that stochastic inversion options can be added without an API change.
        sampler: must be DDIM (any spelling); accepted so a job's sampler option reaches here and a
            non-DDIM one is refused with the reason rather than silently ignored.
        uniform: Uniform Attention Maps inversion (arXiv 2411.19652): every cross-attention output is the mean
            of the text values (`attention_processors.uniform_attention`), so no spatial text attention
            perturbs the trajectory. Reconstruct it with `reconstruct(..., uniform=True)`.
        controls: attention controls, after the uniform one when `uniform`; the step state's branch is
            "invert" and its index counts up from the clean end (step 0 goes from z_0 to z_1).
        on_step_end: step-end hooks (`pipelines.hooks`), branch "invert"; the trajectory records the
            latents they return.
        on_step: called after every step with z_{i+1} as the event's latents, branch "invert".
        cancel: checked at every step boundary; raises `pipelines.events.Cancelled`.

    Returns:
        `Inversion` with the trajectory [z_0, ..., z_T] (z_0 the clean latents) and the denoising timesteps.
    """
    # 1. validate
    del generator  # see the docstring: deterministic DDIM draws no noise
    require_ddim(sampler, "inversion")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    if isinstance(image_or_latents, Tensor):
        clean = image_or_latents
        if clean.ndim != 4 or clean.shape[1] != backbone.latent_channels:
            raise ValueError(
                f"latents must be (N, {backbone.latent_channels}, h, w), got {tuple(clean.shape)}; "
                "pass PIL images to invert pixels"
            )
        image_size = backbone.image_size(clean)
        backbone.check_size(*image_size)
        images = None
    else:
        images = [image_or_latents] if isinstance(image_or_latents, PIL.Image.Image) else list(image_or_latents)
        if not images:
            raise ValueError("nothing to invert: got an empty list of images")
        image_size = (images[0].height if height is None else height, images[0].width if width is None else width)
        backbone.check_size(*image_size)
    count = clean.shape[0] if images is None else len(images)
    prompts = as_list(prompt, "prompt")
    prompts = prompts * count if len(prompts) == 1 else prompts
    if len(prompts) != count:
        raise ValueError(f"got {len(prompts)} prompts for {count} items to invert; pass one, or one per item")
    negatives = negatives_for(negative_prompt, count)
    cfg = guidance_scale > 1.0

    # 2. encode
    if images is not None:
        clean = backbone.encode_images(backbone.preprocess(images, *image_size))  # (N, C, h, w)
    latents = clean.to(backbone.device, backbone.dtype)  # (N, C, h, w) = z_0
    embeds = backbone.encode_prompts(prompts, negatives, cfg=cfg)

    # 3. prepare layout and schedule
    roles = ["source"] * count
    layout = BatchLayout.with_cfg(roles) if cfg else BatchLayout.without_cfg(roles)
    denoising = backbone.ddim_scheduler()
    denoising.set_timesteps(num_inference_steps, device=backbone.device)
    inverse = inverse_ddim_scheduler(backbone.scheduler_config, num_inference_steps)
    timesteps = denoising.timesteps.flip(0)  # ascending: the denoising levels, visited upwards

    # 4. invert: the denoising loop with the inverse step, recording every level
    trajectory = [latents]
    denoise(
        backbone,
        latents,
        scheduler=inverse,
        timesteps=timesteps,
        embeds=embeds,
        layout=layout,
        guidance_scale=guidance_scale,
        controls=[UniformCrossAttention(), *controls] if uniform else controls,
        step=InverseDDIMStep(backbone.prediction_type),
        branch="invert",
        on_step_end=[*on_step_end, LatentRecorder(trajectory)],
        on_step=on_step,
        cancel=cancel,
    )  # (N, C, h, w) = z_T, also trajectory[-1]

    # 5. return the trajectory
    return Inversion(
        trajectory=trajectory, timesteps=[int(t) for t in denoising.timesteps], image_size=tuple(image_size)
    )

