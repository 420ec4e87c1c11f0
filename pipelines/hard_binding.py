"""RAG's regional hard binding on a UNet: each region denoised as its own small latent with its own prompt for
the first steps, and pasted into the global latent after each of them (a step-end hook of the one loop).

Why a pre-pass and a hook: the region runs do not depend on the global image, so they run first, each through
the same loop (its own fresh scheduler, no controls) while a `LatentRecorder` keeps its latents after every
step; the global loop's `HardBinding` hook then overwrites each region's owned cells with the recorded
latents after binding step i, and the loop adopts them. A region run starts from the global noise's crop, and
a stochastic sampler's per-step noise comes from a copy of the job's generator taken after the global noise
was drawn, so a region that is the whole image with the global prompt reproduces plain generation exactly.

The official FLUX code also overwrites the region's hidden states inside the transformer during these
steps; a UNet has no per-token stream to overwrite across its resolutions, so here binding is in the latents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attention_processors import BatchLayout
from pipelines._denoise import denoise
from pipelines._inputs import Generators
from pipelines.backbone import Backbone, PromptEmbeds
from pipelines.events import CancelToken, StepCallback
from pipelines.hooks import LatentRecorder, StepEnd
from pipelines.region_boxes import binding_steps  # noqa: F401 - re-exported
from pipelines.regions import PlacedRegion
from pipelines.samplers import build_scheduler, step_for


def copy_generator(generator: Generators | None) -> torch.Generator | None:
    """A generator in the same state as `generator` (one generator, or the only one of a list)."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        generators = list(generator)
        if len(generators) != 1:
            raise ValueError(f"regional generation makes one image; got {len(generators)} generators")
        generator = generators[0]
    clone = torch.Generator(device=generator.device)
    clone.set_state(generator.get_state())
    return clone


def region_embeds(embeds: PromptEmbeds, r: int) -> PromptEmbeds:
    """Stream r of a multi-prompt encoding, as a one-stream encoding."""

    def one(t: Tensor | None) -> Tensor | None:
        return None if t is None else t[r : r + 1]

    return PromptEmbeds(one(embeds.cond), one(embeds.uncond), one(embeds.cond_pooled), one(embeds.uncond_pooled))


def bind_regions(
    backbone: Backbone,
    latents: Tensor,
    regions: Sequence[PlacedRegion],
    embeds: PromptEmbeds,
    *,
    steps: int,
    num_inference_steps: int,
    sampler: str,
    guidance_scale: float,
    generator: Generators | None,
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[list[Tensor]]:
    """Denoise each region's crop of `latents` (1, C, h, w) for the first `steps` steps with its own prompt
    (stream r of `embeds`: the regions' binding prompts); returns each region's latents after every step,
    (1, C, h_r, w_r) each."""
    if steps == 0:
        return [[] for _ in regions]
    layout = BatchLayout.with_cfg(["target"]) if guidance_scale > 1.0 else BatchLayout.without_cfg(["target"])
    trajectories = []
    for r, region in enumerate(regions):
        scheduler = build_scheduler(backbone.scheduler_config, sampler)
        scheduler.set_timesteps(num_inference_steps, device=backbone.device)
        crop = latents[:, :, region.top : region.bottom, region.left : region.right]  # (1, C, h_r, w_r)
        recorded: list[Tensor] = []
        denoise(
            backbone,
            crop,
            scheduler=scheduler,
            timesteps=scheduler.timesteps[:steps],
            embeds=region_embeds(embeds, r),
            layout=layout,
            guidance_scale=guidance_scale,
            step=step_for(sampler, copy_generator(generator)),
            branch="bind",
            on_step_end=[LatentRecorder(recorded)],
            on_step=on_step,
            cancel=cancel,
        )
        trajectories.append(recorded)
    return trajectories


@dataclass(frozen=True)
class HardBinding:
    """Step-end hook: after bound step i, stream `stream`'s owned cells of each region become its run's latents.

    Regions are pasted in order, so where they overlap the later one's latents are kept.
    """

    regions: Sequence[PlacedRegion]
    trajectories: Sequence[Sequence[Tensor]]  # region -> latents after each bound step, (1, C, h_r, w_r)
    stream: int = 0

    def __call__(self, end: StepEnd) -> Tensor | None:
        if end.branch != "denoise" or not self.trajectories or end.index >= len(self.trajectories[0]):
            return None
        latents = end.latents.clone()  # (N, C, h, w)
        for region, trajectory in zip(self.regions, self.trajectories, strict=True):
            window = latents[self.stream, :, region.top : region.bottom, region.left : region.right]  # (C, h_r, w_r)
            owned = region.owned.to(window.device, torch.bool)  # (h_r, w_r)
            bound = trajectory[end.index][0].to(window)  # (C, h_r, w_r)
            latents[self.stream, :, region.top : region.bottom, region.left : region.right] = torch.where(
                owned, bound, window
            )
        return latents
