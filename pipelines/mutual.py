"""Mutual self-attention editing (MasaCtrl): keep a source image's appearance under a new prompt.

Synthesis: source and targets share the initial noise; the source row is generated from the source prompt
in the same batch. Real image: the source is DDIM-inverted and its row is teacher-forced onto the stored
trajectory, and the targets start from its x_T. Either way the targets' self-attention reads the
source's keys and values (the control lives in `attention_processors/mutual_self_attention.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import PIL.Image
import torch
from torch import Tensor

from attention_processors import BatchLayout, Control, SiteFilter, StepWindow
from attention_processors.mutual_self_attention import MASACTRL, MaskPair, MutualSelfAttention
from attention_processors.selection import decoder_self_attention
from attention_processors.uniform_attention import UniformCrossAttention
from pipelines._denoise import denoise
from pipelines._inputs import Generators, as_list, draw_noise
from pipelines.backbone import Backbone
from pipelines.events import CancelToken, StepCallback
from pipelines.inversion import invert
from pipelines.samplers import DEFAULT_SAMPLER, build_scheduler, require_ddim, step_for
from pipelines.settings import MUTUAL, MutualSettings, check_inversion  # noqa: F401 - re-exported


@dataclass(frozen=True)
class MutualOutput:
    images: list[PIL.Image.Image]  # one per target prompt
    source: PIL.Image.Image  # the source as the batch regenerated it (the reconstruction for real images)
    latents: Tensor  # (N, C, h, w) targets' final latents


@torch.no_grad()
def mutual_edit(
    backbone: Backbone,
    target_prompt: str | Sequence[str],
    *,
    source_prompt: str = "",
    source_image: PIL.Image.Image | None = None,
    masks: MaskPair | None = None,
    start: float = MASACTRL.start,
    levels: int = MASACTRL.levels,
    sites: SiteFilter | None = None,
    negative_prompt: str | None = None,
    num_inference_steps: int = MUTUAL.steps,
    guidance_scale: float = MUTUAL.guidance,
    sampler: str = DEFAULT_SAMPLER,
    inversion_guidance_scale: float = MUTUAL.inversion_guidance,
    inversion: str = "ddim",
    width: int | None = None,
    height: int | None = None,
    generator: Generators | None = None,
    controls: Sequence[Control] = (),
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> MutualOutput:
    """Generate each target prompt with the source's appearance.

    Args:
        source_image: a real image to edit; None synthesises the source from `source_prompt`.
        masks: source and target foreground masks for MasaCtrl's masked variant.
        start: first controlled step as a fraction of the schedule (MasaCtrl: step 4 of 50).
        levels: decoder self-attention at this many highest resolutions (MasaCtrl: 2, i.e. blocks 10–15).
        sites: overrides `levels` with any site filter.
        sampler: any sampler for synthesis; a real source image needs DDIM (its row replays a DDIM inversion).
        inversion_guidance_scale: CFG during inversion of a real source (1: none, the usual choice).
        inversion: "ddim", or "uniform": the real source is inverted with uniform cross-attention maps (UAM,
            arXiv 2411.19652) and its teacher-forced row keeps them, so it replays the trajectory it was
            inverted with; the targets' cross-attention stays the prompt's.
        generator: the shared initial noise for synthesis (unused for real images, which start at x_T).
    """
    # 1. validate
    targets = as_list(target_prompt, "target_prompt")
    uniform = check_inversion(inversion) == "uniform"
    if source_image is not None:
        require_ddim(sampler, "mutual self-attention editing of a real image")
    elif uniform:
        raise ValueError("uniform inversion needs a real source image; a synthesised source is not inverted")
    step = step_for(sampler, generator)
    control = MutualSelfAttention(
        steps=StepWindow(start, 1.0), sites=sites or decoder_self_attention(levels), masks=masks
    )
    cfg = guidance_scale > 1.0
    # 2. encode: stream 0 is the source, streams 1..N the targets
    prompts = [source_prompt, *targets]
    negatives = None if negative_prompt is None else [negative_prompt] * len(prompts)
    embeds = backbone.encode_prompts(prompts, negatives, cfg=cfg)
    # 3. prepare the source (inverted or synthesised) and the shared start noise
    scheduler = build_scheduler(backbone.scheduler_config, sampler)
    scheduler.set_timesteps(num_inference_steps, device=backbone.device)
    teacher = None
    if source_image is not None:
        h, w = height or source_image.height, width or source_image.width
        inversion = invert(
            backbone,
            source_image,
            source_prompt,
            num_inference_steps=num_inference_steps,
            guidance_scale=inversion_guidance_scale,
            negative_prompt=negative_prompt,
            height=h,
            width=w,
            uniform=uniform,
            cancel=cancel,
        )
        start_noise = inversion.x_T  # (1, C, h, w)
        teacher = {0: inversion.stream(0)}
    else:
        if generator is None:
            raise ValueError("pass a torch.Generator: synthesis draws the shared initial noise from it")
        lh, lw = backbone.latent_size(*backbone.resolve_size(height, width))
        start_noise = draw_noise(1, (backbone.latent_channels, lh, lw), generator, backbone.device, backbone.dtype)
        start_noise = start_noise * scheduler.init_noise_sigma
    latents = start_noise.expand(len(prompts), -1, -1, -1).clone()  # (1 + N, C, h, w)
    roles = ["source"] + ["target"] * len(targets)
    layout = BatchLayout.with_cfg(roles) if cfg else BatchLayout.without_cfg(roles)
    # 4. denoise
    latents = denoise(
        backbone,
        latents,
        scheduler=scheduler,
        timesteps=scheduler.timesteps,
        embeds=embeds,
        layout=layout,
        guidance_scale=guidance_scale,
        controls=[control, *([UniformCrossAttention(roles=("source",))] if uniform else []), *controls],
        step=step,
        teacher=teacher,
        on_step=on_step,
        cancel=cancel,
    )  # (1 + N, C, h, w)
    # 5. decode
    images = backbone.latents_to_pil(latents)
    return MutualOutput(images=images[1:], source=images[0], latents=latents[1:])
