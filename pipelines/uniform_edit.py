"""Real-image editing with Uniform Attention Maps (UAM, WACV 2025, arXiv 2411.19652) over mutual self-attention.

Why: MasaCtrl-style editing of a real image drifts even where the prompt changes nothing, because the
source branch regenerated from plain DDIM inversion does not return the input. UAM adds an auxiliary
branch that inverts and regenerates the input with uniform cross-attention maps (text attention that no
longer depends on position), and in the last steps rebuilds the edit's latents from an x̂0 that takes the
auxiliary branch's prediction wherever the source and target predictions agree.

One batch, one denoising loop (the official code makes a second UNet call per step; ours is one call):
- per edit i, a source stream and a target stream from plain DDIM inversion's x_T, with CFG; the source
  takes the source prompt and runs free (as officially: its x̂0 is mixed too, so it is not teacher-forced),
  the target takes the target prompt and mutual self-attention to the source (MasaCtrl's control);
- a uniform stream from the uniform inversion's x_T, without CFG, with uniform cross-attention and the
  prompt it was inverted with;
- below the cutoff timestep the step-end hook mixes x̂0 (`pipelines/uniform_mixing.py`).

`inversion="ddim"` runs the same edit without the uniform branch and the mixing: the paper's MasaCtrl
baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import PIL.Image
import torch
from torch import Tensor

from attention_processors import BatchLayout, Control, SiteFilter, StepWindow
from attention_processors.mutual_self_attention import MASACTRL, MutualSelfAttention
from attention_processors.selection import decoder_self_attention
from attention_processors.uniform_attention import UniformCrossAttention
from pipelines._denoise import denoise
from pipelines._inputs import as_list, negatives_for
from pipelines.backbone import Backbone
from pipelines.events import CancelToken, StepCallback
from pipelines.inversion import invert
from pipelines.samplers import DEFAULT_SAMPLER, require_ddim
from pipelines.settings import UNIFORM_EDIT, UniformEditSettings, check_inversion  # noqa: F401 - re-exported
from pipelines.uniform_mixing import UniformMapMixing


@dataclass(frozen=True)
class UniformEditOutput:
    images: list[PIL.Image.Image]  # the edits, one per input image
    sources: list[PIL.Image.Image]  # the source branch as it ended (a reconstruction of each input)
    reconstructions: list[PIL.Image.Image]  # the uniform branch (empty with inversion="ddim")
    latents: Tensor  # (N, C, h, w) the edits' final latents


def _per_item(value: str | Sequence[str], count: int, name: str) -> list[str]:
    values = as_list(value, name)
    values = values * count if len(values) == 1 else values
    if len(values) != count:
        raise ValueError(f"got {len(values)} {name}s for {count} images; pass one, or one per image")
    return values


@torch.no_grad()
def uniform_edit(
    backbone: Backbone,
    image: PIL.Image.Image | Sequence[PIL.Image.Image],
    target_prompt: str | Sequence[str],
    *,
    source_prompt: str | Sequence[str] = "",
    inversion: str = "uniform",
    start: float = MASACTRL.start,
    levels: int = MASACTRL.levels,
    sites: SiteFilter | None = None,
    quantile: float = UNIFORM_EDIT.quantile,
    cutoff: int = UNIFORM_EDIT.cutoff,
    dilate: int = UNIFORM_EDIT.dilate,
    negative_prompt: str | None = None,
    num_inference_steps: int = UNIFORM_EDIT.steps,
    guidance_scale: float = UNIFORM_EDIT.guidance,
    sampler: str = DEFAULT_SAMPLER,
    width: int | None = None,
    height: int | None = None,
    controls: Sequence[Control] = (),
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> UniformEditOutput:
    """Edit each image towards its target prompt, keeping the rest of the image.

    Args:
        image: one image or a batch (all resized to height x width, default the first image's size).
        target_prompt, source_prompt: one for all images or one per image. The official source prompt is "".
        inversion: "uniform" (UAM: the uniform branch and the x̂0 mixing) or "ddim" (plain MasaCtrl editing).
        start, levels, sites: mutual self-attention's step window and sites (as `pipelines.mutual`).
        quantile, cutoff, dilate: the mixing's final quantile, timestep cutoff and mask dilation.
        sampler: must be DDIM (inversions are DDIM's; the mixing rebuilds latents with DDIM's update).
    """
    # 1. validate
    require_ddim(sampler, "uniform attention maps editing")
    check_inversion(inversion)
    images = [image] if isinstance(image, PIL.Image.Image) else list(image)
    if not images:
        raise ValueError("nothing to edit: got an empty list of images")
    count = len(images)
    targets = _per_item(target_prompt, count, "target prompt")
    sources = _per_item(source_prompt, count, "source prompt")
    uniform = inversion == "uniform"
    triples = tuple((i, count + i, 2 * count + i) for i in range(count))  # (source, target, uniform) streams
    mixing = UniformMapMixing(triples, backbone.prediction_type, quantile, cutoff, dilate)  # checks its settings
    size = {"height": height or images[0].height, "width": width or images[0].width}
    # 2. invert: plain DDIM for the edit, uniform maps for the auxiliary branch (both without CFG, as officially)
    inverting = {"num_inference_steps": num_inference_steps, "on_step": on_step, "cancel": cancel, **size}
    plain = invert(backbone, images, sources, **inverting)
    starts = [plain.x_T, plain.x_T]  # source and target streams of every edit
    if uniform:
        aux = invert(backbone, images, sources, uniform=True, **inverting)
        starts.append(aux.x_T)
    # 3. encode and lay out: streams [sources..., targets..., uniforms...]
    cfg = guidance_scale > 1.0
    roles = ["source"] * count + ["target"] * count
    layout = BatchLayout.with_cfg(roles) if cfg else BatchLayout.without_cfg(roles)
    prompts = sources + targets
    if uniform:
        layout = layout + BatchLayout.without_cfg(["uniform"] * count)
        prompts = prompts + sources
    embeds = backbone.encode_prompts(prompts, negatives_for(negative_prompt, len(prompts)), cfg=cfg)
    mutual = MutualSelfAttention(steps=StepWindow(start, 1.0), sites=sites or decoder_self_attention(levels))
    attention: list[Control] = [mutual]
    if uniform:
        attention.append(UniformCrossAttention(roles=("uniform",)))
    # 4. denoise
    scheduler = backbone.ddim_scheduler()
    scheduler.set_timesteps(num_inference_steps, device=backbone.device)
    latents = denoise(
        backbone,
        torch.cat(starts),  # (2N or 3N, C, h, w)
        scheduler=scheduler,
        timesteps=scheduler.timesteps,
        embeds=embeds,
        layout=layout,
        guidance_scale=guidance_scale,
        controls=[*attention, *controls],
        on_step_end=[mixing] if uniform else [],
        on_step=on_step,
        cancel=cancel,
    )  # (2N or 3N, C, h, w)
    # 5. decode
    decoded = backbone.latents_to_pil(latents)
    return UniformEditOutput(
        images=decoded[count : 2 * count],
        sources=decoded[:count],
        reconstructions=decoded[2 * count :],
        latents=latents[count : 2 * count],
    )
