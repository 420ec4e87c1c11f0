"""Regional text-to-image (RAG, Chen et al., ICCV 2025) on SD1.x/2.x and SDXL UNets: a global prompt plus
regions, each a box or a mask with its own prompt.

Two mechanisms, as in the paper: hard binding (`pipelines/hard_binding.py`: each region denoised alone for the
first steps and pasted in) and soft refinement (`attention_processors/regional.py`: each region's queries also
attend to its own prompt at every cross-attention site and step, blended with the global attention by δ).
Repainting (`pipelines/repainting.py`) is this pipeline with the outside of the region held to an earlier image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attention_processors import BatchLayout, Control
from attention_processors.regional import RegionalCrossAttention, TextRegion
from attention_processors.settings import REGIONAL
from pipelines._denoise import denoise
from pipelines._inputs import Generators, draw_noise
from pipelines.backbone import Backbone
from pipelines.events import CancelToken, StepCallback
from pipelines.hard_binding import HardBinding, bind_regions, binding_steps
from pipelines.hooks import StepEndHook
from pipelines.outputs import GenerationOutput
from pipelines.regions import Region, place
from pipelines.samplers import DEFAULT_SAMPLER, build_scheduler, step_for
from pipelines.settings import GENERATE, REGIONAL_RUN


@torch.no_grad()
def regional(
    backbone: Backbone,
    prompt: str,
    regions: Sequence[Region],
    *,
    delta: float = REGIONAL.delta,
    binding: float = REGIONAL_RUN.binding,
    negative_prompt: str | None = None,
    num_inference_steps: int = GENERATE.steps,
    guidance_scale: float = GENERATE.guidance,
    sampler: str = DEFAULT_SAMPLER,
    width: int | None = None,
    height: int | None = None,
    generator: Generators | None = None,
    latents: Tensor | None = None,
    controls: Sequence[Control] = (),
    on_step_end: Sequence[StepEndHook] = (),
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> GenerationOutput:
    """One image of `prompt` whose `regions` each show their own prompt.

    Args:
        regions: boxes (x, y, w, h fractions) or masks, each with a prompt (and optionally a binding prompt for its
            own run during hard binding); they may overlap.
        delta: soft refinement's weight of a region's own prompt inside it (0: none, 1: the official default).
        binding: share of the first steps in which each region is denoised alone and pasted (0: none).
        latents: (1, C, h, w) initial noise instead of drawing it from `generator`.
        controls: more attention controls (they act on the global run, not on the regions' own runs).
        on_step_end: more step-end hooks, after the binding hook.
        The rest as `pipelines.text_to_image.generate`.
    """
    # 1. validate and place the regions on the latent grid
    height, width = backbone.resolve_size(height, width)
    latent_size = backbone.latent_size(height, width)
    placed = place(regions, latent_size)
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    if not 0.0 <= binding <= 1.0:
        raise ValueError(f"binding must be a share of the schedule in [0, 1], got {binding}")
    if latents is None and generator is None:
        raise ValueError("pass a torch.Generator or initial latents: all noise comes from them")
    shape = (backbone.latent_channels, *latent_size)
    if latents is not None and tuple(latents.shape) != (1, *shape):
        raise ValueError(f"latents must have shape {(1, *shape)}, got {tuple(latents.shape)}")
    cfg = guidance_scale > 1.0

    # 2. encode the global prompt and each region's
    negatives = None if negative_prompt is None else [negative_prompt]
    embeds = backbone.encode_prompts([prompt], negatives, cfg=cfg)
    region_negatives = None if negative_prompt is None else [negative_prompt] * len(placed)
    region_embeds = backbone.encode_prompts([r.prompt for r in placed], region_negatives, cfg=cfg)
    binding_embeds = region_embeds
    if any(r.binding_prompt != r.prompt for r in placed):
        binding_embeds = backbone.encode_prompts([r.binding_prompt for r in placed], region_negatives, cfg=cfg)

    # 3. initial noise, then the regions' own runs for the bound steps
    scheduler = build_scheduler(backbone.scheduler_config, sampler)
    scheduler.set_timesteps(num_inference_steps, device=backbone.device)
    if latents is None:
        latents = draw_noise(1, shape, generator, backbone.device, backbone.dtype)  # (1, C, h, w)
    latents = latents.to(backbone.device, backbone.dtype) * scheduler.init_noise_sigma  # (1, C, h, w)
    trajectories = bind_regions(
        backbone,
        latents,
        placed,
        binding_embeds,
        steps=binding_steps(binding, num_inference_steps),
        num_inference_steps=num_inference_steps,
        sampler=sampler,
        guidance_scale=guidance_scale,
        generator=generator,
        on_step=on_step,
        cancel=cancel,
    )

    # 4. the global run: soft refinement in attention, binding between the first steps
    text_regions = [TextRegion(region_embeds.cond[r], p.cells) for r, p in enumerate(placed)]
    refinement = RegionalCrossAttention(text_regions, delta=delta)
    layout = BatchLayout.with_cfg(["target"]) if cfg else BatchLayout.without_cfg(["target"])
    latents = denoise(
        backbone,
        latents,
        scheduler=scheduler,
        timesteps=scheduler.timesteps,
        embeds=embeds,
        layout=layout,
        guidance_scale=guidance_scale,
        controls=[refinement, *controls],
        step=step_for(sampler, generator),
        on_step_end=[HardBinding(placed, trajectories), *on_step_end],
        on_step=on_step,
        cancel=cancel,
    )  # (1, C, h, w)

    # 5. decode
    notes = tuple(dict.fromkeys(embeds.notes + region_embeds.notes + binding_embeds.notes))
    return GenerationOutput(images=backbone.latents_to_pil(latents), latents=latents, notes=notes)
