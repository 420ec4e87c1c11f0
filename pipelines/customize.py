"""FreeCustom: multi-concept composition from reference images, tuning-free (CVPR 2024).

The generated image attends to every reference's concept through multi-reference self-attention (the
control lives in `attention_processors/multi_reference.py`). The references ride in the same UNet batch:
at every step each clean reference latent is re-noised to the current timestep with fresh noise (forward
diffusion, not inversion, as the official code does), and its UNet output is thrown away. With
`style_fidelity = 1` (the default) the unconditional half never sees the references, so each reference
costs one conditional row instead of a CFG pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import PIL.Image
import torch
from torch import Tensor

from attention_processors import BatchLayout, Control, SiteFilter, StepWindow
from attention_processors.multi_reference import FREECUSTOM, MultiReferenceSelfAttention
from attention_processors.selection import decoder_self_attention
from pipelines._denoise import denoise
from pipelines._inputs import Generators, as_list, draw_noise, negatives_for
from pipelines.backbone import Backbone, PromptEmbeds
from pipelines.events import CancelToken, StepCallback
from pipelines.outputs import GenerationOutput
from pipelines.samplers import DEFAULT_SAMPLER, require_ddim
from pipelines.settings import FREECUSTOM_RUN, FreeCustomRunSettings  # noqa: F401 - re-exported


@dataclass(frozen=True)
class Reference:
    """One concept: its image, its foreground mask [H, W] (any size, same aspect), and a caption."""

    image: PIL.Image.Image
    mask: Tensor
    caption: str


def estimate_memory_bytes(backbone: Backbone, height: int, width: int, items: int, references: int, cfg: bool) -> int:
    """A coarse upper estimate of the peak working memory of one FreeCustom UNet call.

    Rows = 2·items (CFG) + references (one conditional row each). Per row, the UNet keeps about a dozen
    activation maps of each resolution's width alive; the MRSA sites add the concatenated reference keys
    and values for every generated row. Weights are counted once.
    """
    h, w = backbone.latent_size(height, width)
    rows = (2 if cfg else 1) * items + references
    bytes_per = torch.finfo(backbone.dtype).bits // 8
    channels = list(backbone.unet.config.block_out_channels)
    activations = sum(12 * c * (h >> i) * (w >> i) for i, c in enumerate(channels)) * bytes_per
    mrsa_kv = 2 * (2 if cfg else 1) * items * references * channels[0] * h * w * bytes_per
    weights = sum(p.numel() for p in backbone.unet.parameters()) * bytes_per
    return weights + rows * activations + mrsa_kv


@torch.no_grad()
def freecustom(
    backbone: Backbone,
    prompt: str | Sequence[str],
    references: Sequence[Reference],
    *,
    mask_weights: float | Sequence[float] = FREECUSTOM.mask_weight,
    style_fidelity: float = FREECUSTOM.style_fidelity,
    negative_prompt: str | Sequence[str] | None = None,
    num_inference_steps: int = FREECUSTOM_RUN.steps,
    guidance_scale: float = FREECUSTOM_RUN.guidance,
    width: int | None = None,
    height: int | None = None,
    generator: Generators | None = None,
    reference_seed: int = FREECUSTOM_RUN.reference_seed,
    sampler: str = DEFAULT_SAMPLER,
    steps: StepWindow | None = None,
    sites: SiteFilter | None = None,
    controls: Sequence[Control] = (),
    max_memory_bytes: int | None = None,
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> GenerationOutput:
    """Generate one image per prompt that composes the references' concepts.

    Args:
        references: the concepts; each mask marks its concept in its image. A reference with an empty mask
            contributes nothing (its keys are all masked out).
        mask_weights: FreeCustom's `w`, added to the logits of each reference's foreground keys (3.0).
        style_fidelity: 1 keeps the unconditional half plain (the official default); lower values mix MRSA
            into it, which then needs an unconditional row per reference.
        reference_seed: seeds the fresh noise that re-noises the references each step. It is separate from
            the items' generators so that item i of a batch equals a single run of item i.
        steps, sites: where MRSA acts; default all steps, decoder self-attention at the two highest
            resolutions.
        sampler: must be DDIM: the references are re-noised with DDIM's forward process at each step and
            teacher-forced, which a multistep or sigma-space sampler's state would not follow.
        max_memory_bytes: refuse to run (ValueError with the estimate) when the estimated peak exceeds it.
        Other arguments: as `pipelines.text_to_image.generate`.
    """
    # 1. validate
    require_ddim(sampler, "FreeCustom", "its references are re-noised to DDIM's levels and teacher-forced each step")
    prompts = as_list(prompt, "prompt")
    negatives = negatives_for(negative_prompt, len(prompts))
    height, width = backbone.resolve_size(height, width)
    latent_h, latent_w = backbone.latent_size(height, width)
    if generator is None:
        raise ValueError("pass a torch.Generator (or one per item): all noise comes from it")
    cfg = guidance_scale > 1.0
    if max_memory_bytes is not None:
        need = estimate_memory_bytes(backbone, height, width, len(prompts), len(references), cfg)
        if need > max_memory_bytes:
            raise ValueError(
                f"{len(references)} references at {width}x{height} need about {need / 2**30:.1f} GiB "
                f"(estimate), more than the {max_memory_bytes / 2**30:.1f} GiB available; use fewer references "
                "or a smaller size"
            )
    control = MultiReferenceSelfAttention(
        masks=[r.mask for r in references],
        weights=mask_weights,
        style_fidelity=style_fidelity,
        steps=steps or StepWindow(),
        sites=sites or decoder_self_attention(),
    )
    # 2. encode: items with their negatives; references with their captions
    captions = [r.caption for r in references]
    refs_need_uncond = cfg and style_fidelity < 1.0
    items = backbone.encode_prompts(prompts, negatives, cfg=cfg)
    refs = (
        backbone.encode_prompts(captions, negatives_for(negative_prompt, len(captions)), cfg=cfg) if captions else None
    )
    if refs is not None and refs.cond.shape[1] != items.cond.shape[1]:  # long or BREAK prompts: one chunk count
        both = None if negatives is None else negatives + negatives_for(negative_prompt, len(captions))
        embeds = backbone.encode_prompts(prompts + captions, both, cfg=cfg)
    else:
        embeds = items if refs is None else _concat(items, refs)
    # 3. prepare latents, layout, schedule and the re-noised references
    targets = ["target"] * len(prompts)
    roles = targets + ["reference"] * len(references)
    if not cfg:
        layout = BatchLayout.without_cfg(roles)
    elif refs_need_uncond:
        layout = BatchLayout.with_cfg(roles)
    else:
        layout = BatchLayout.with_cfg(targets) + BatchLayout.without_cfg(["reference"] * len(references))
    scheduler = backbone.ddim_scheduler()
    scheduler.set_timesteps(num_inference_steps, device=backbone.device)
    shape = (backbone.latent_channels, latent_h, latent_w)
    noise = draw_noise(len(prompts), shape, generator, backbone.device, backbone.dtype)  # (N, C, h, w)
    latents = noise * scheduler.init_noise_sigma
    teacher = {}
    if references:
        pixels = backbone.preprocess([r.image for r in references], height, width)  # (R, 3, H, W)
        clean = backbone.encode_images(pixels)  # (R, C, h, w)
        teacher = _renoised(clean, scheduler.timesteps, scheduler, reference_seed, len(prompts))
        latents = torch.cat([latents, torch.stack([t[-1][0] for t in teacher.values()])])  # (N + R, C, h, w)
    # 4. denoise
    latents = denoise(
        backbone,
        latents,
        scheduler=scheduler,
        timesteps=scheduler.timesteps,
        embeds=embeds,
        layout=layout,
        guidance_scale=guidance_scale,
        controls=[control, *controls],
        teacher=teacher or None,
        on_step=on_step,
        cancel=cancel,
    )  # (N + R, C, h, w)
    # 5. decode the generated items only
    generated = latents[: len(prompts)]
    return GenerationOutput(images=backbone.latents_to_pil(generated), latents=generated)


def _concat(a: PromptEmbeds, b: PromptEmbeds) -> PromptEmbeds:
    def cat(x: Tensor | None, y: Tensor | None) -> Tensor | None:
        return None if x is None or y is None else torch.cat([x, y])

    return PromptEmbeds(
        cat(a.cond, b.cond),
        cat(a.uncond, b.uncond),
        cat(a.cond_pooled, b.cond_pooled),
        cat(a.uncond_pooled, b.uncond_pooled),
    )


def _renoised(clean: Tensor, timesteps: Tensor, scheduler, seed: int, first_stream: int) -> dict[int, list[Tensor]]:
    """Teacher trajectories that put each reference at `add_noise(z_0, fresh noise, t_i)` before step i.

    The denoising loop reads position T - i before step i, so position T - i holds the noising for
    timesteps[i]; position 0 is the clean latent (where the loop ends).
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    total = len(timesteps)
    out: dict[int, list[Tensor]] = {}
    for r in range(clean.shape[0]):
        z0 = clean[r : r + 1]  # (1, C, h, w)
        trajectory = [z0] * (total + 1)
        for i, t in enumerate(timesteps):
            fresh = torch.randn(z0.shape, generator=generator).to(z0)  # (1, C, h, w)
            trajectory[total - i] = scheduler.add_noise(z0, fresh, t.reshape(1))
        out[first_stream + r] = trajectory
    return out
