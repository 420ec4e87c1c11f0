"""Image-to-image (SDEdit): noise the image's latents part-way, then denoise with the prompt (any sampler)."""

from __future__ import annotations

from collections.abc import Sequence

import PIL.Image
import torch

from attention_processors import BatchLayout, Control
from pipelines._denoise import denoise
from pipelines._inputs import Generators, as_list, draw_noise, negatives_for
from pipelines.backbone import Backbone
from pipelines.events import CancelToken, StepCallback
from pipelines.hooks import StepEndHook
from pipelines.outputs import GenerationOutput
from pipelines.samplers import DEFAULT_SAMPLER, build_scheduler, step_for


@torch.no_grad()
def img2img(
    backbone: Backbone,
    prompt: str | Sequence[str],
    image: PIL.Image.Image | Sequence[PIL.Image.Image],
    *,
    strength: float = 0.8,
    negative_prompt: str | Sequence[str] | None = None,
    num_inference_steps: int = 25,
    guidance_scale: float = 5.0,
    sampler: str = DEFAULT_SAMPLER,
    width: int | None = None,
    height: int | None = None,
    generator: Generators,
    controls: Sequence[Control] = (),
    on_step_end: Sequence[StepEndHook] = (),
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> GenerationOutput:
    """Repaint `image` towards `prompt`, keeping its layout; `strength` is how far back in the schedule to start.

    As in diffusers, `strength` in (0, 1] runs the last `int(num_inference_steps * strength)` steps of a
    `num_inference_steps` schedule (1.0 ignores the image's content entirely). The image is encoded to the VAE
    posterior mean, so the only randomness is the added noise.

    Args:
        image: one image for every prompt, or one per prompt. Resized to (height, width), which default to
            the (first) image's own size and must be multiples of `backbone.size_multiple`.
        generator: draws the added noise per item, with the same rule as `generate`.
        Other arguments: as `pipelines.text_to_image.generate`.
    """
    # 1. validate
    prompts = as_list(prompt, "prompt")
    negatives = negatives_for(negative_prompt, len(prompts))
    images = [image] if isinstance(image, PIL.Image.Image) else list(image)
    if len(images) == 1:
        images = images * len(prompts)
    if len(images) != len(prompts):
        raise ValueError(f"got {len(images)} images for {len(prompts)} prompts; pass one, or one per prompt")
    height = images[0].height if height is None else height
    width = images[0].width if width is None else width
    latent_h, latent_w = backbone.latent_size(height, width)
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    start_steps = min(int(num_inference_steps * strength), num_inference_steps)
    if start_steps < 1:
        raise ValueError(f"strength {strength} with {num_inference_steps} steps runs no step; raise either of them")
    step = step_for(sampler, generator)
    cfg = guidance_scale > 1.0

    # 2. encode
    embeds = backbone.encode_prompts(prompts, negatives, cfg=cfg)
    clean = backbone.encode_images(backbone.preprocess(images, height, width))  # (N, C, h, w)

    # 3. prepare latents, layout and schedule
    roles = ["target"] * len(prompts)
    layout = BatchLayout.with_cfg(roles) if cfg else BatchLayout.without_cfg(roles)
    scheduler = build_scheduler(backbone.scheduler_config, sampler)
    scheduler.set_timesteps(num_inference_steps, device=backbone.device)
    first = (num_inference_steps - start_steps) * scheduler.order
    timesteps = scheduler.timesteps[first:]  # the last `start_steps` steps
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(first)  # as diffusers' img2img: sigma-indexed samplers start mid-schedule
    shape = (backbone.latent_channels, latent_h, latent_w)
    noise = draw_noise(len(prompts), shape, generator, backbone.device, backbone.dtype)  # (N, C, h, w)
    latents = scheduler.add_noise(clean, noise, timesteps[:1])  # (N, C, h, w) at the level of timesteps[0]

    # 4. denoise
    latents = denoise(
        backbone,
        latents,
        scheduler=scheduler,
        timesteps=timesteps,
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
    images_out = backbone.latents_to_pil(latents)
    return GenerationOutput(images=images_out, latents=latents, notes=embeds.notes)
