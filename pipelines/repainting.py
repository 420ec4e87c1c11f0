"""RAG's repainting on a UNet: change one region of an earlier image to a new region prompt and keep the rest.

How: the image's latent x0 is noised with the seed's noise ε to each step's level, z_t = √ᾱ_t x0 + √(1−ᾱ_t) ε
(DDIM's own forward marginal), and a step-end hook holds every cell outside the region to it after each step,
while inside the region the regional pipeline runs (hard binding of the region's new prompt for the first
steps, soft refinement at every step, the global prompt around it). With the seed of the original run the
region starts from the very noise the original started from. After decoding, the pixels outside the region
are pasted back from the input, so they are the input's own bytes.

The official FLUX code replays the original generation's hidden states outside the mask; noising the image
itself needs no replay, so any image with a seed can be repainted, with or without the job that made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor

from attention_processors import Control
from attention_processors.settings import REGIONAL
from pipelines._inputs import Generators, draw_noise
from pipelines.backbone import Backbone
from pipelines.events import CancelToken, StepCallback
from pipelines.hooks import StepEnd
from pipelines.outputs import GenerationOutput
from pipelines.regional_prompting import regional
from pipelines.regions import Region, place
from pipelines.samplers import build_scheduler, require_ddim
from pipelines.settings import GENERATE, REGIONAL_RUN

NEEDS_DDIM = "the outside of the region is held to the image noised to DDIM's levels at every step"


@dataclass(frozen=True)
class HoldOutside:
    """Step-end hook: after step i, the cells outside `cells` are the image's latent x0 noised to the next level."""

    x0: Tensor  # (1, C, h, w)
    noise: Tensor  # (1, C, h, w)
    cells: Tensor  # (h, w) in {0, 1}: the region, left free
    scheduler: object  # the run's DDIM scheduler (its alphas_cumprod)

    def __call__(self, end: StepEnd) -> Tensor | None:
        if end.branch != "denoise":
            return None
        later = end.timesteps[end.index + 1 :]
        outside = self.x0 if not later else noised(self.scheduler, self.x0, self.noise, later[0])  # (1, C, h, w)
        inside = self.cells.to(end.latents.device, torch.bool)  # (h, w)
        return torch.where(inside, end.latents, outside.to(end.latents))


def noised(scheduler, x0: Tensor, noise: Tensor, timestep: int) -> Tensor:
    """√ᾱ_t x0 + √(1−ᾱ_t) ε at `timestep` (1, C, h, w)."""
    return scheduler.add_noise(x0, noise, torch.tensor([int(timestep)]))


def pixel_region(region: Region, cells: Tensor, size: tuple[int, int]) -> np.ndarray:
    """The region in pixels (H, W) bool: a box's latent cells scaled up, or the mask itself at the image size."""
    height, width = size
    source = cells if region.mask is None else region.mask
    grid = F.interpolate(source[None, None].float(), size=(height, width), mode="nearest")[0, 0]  # (H, W)
    return grid.numpy() >= 0.5


@torch.no_grad()
def repaint(
    backbone: Backbone,
    image: PIL.Image.Image,
    region: Region,
    *,
    prompt: str = "",
    delta: float = REGIONAL.delta,
    binding: float = REGIONAL_RUN.binding,
    negative_prompt: str | None = None,
    num_inference_steps: int = GENERATE.steps,
    guidance_scale: float = GENERATE.guidance,
    sampler: str = "ddim",
    generator: Generators | None = None,
    controls: Sequence[Control] = (),
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> GenerationOutput:
    """`image` with `region` repainted to `region.prompt`; `prompt` describes the whole image (the original's).

    The image is used at its own size, which must suit the model (a multiple of `backbone.size_multiple`).
    """
    require_ddim(sampler, "repainting", NEEDS_DDIM)
    width, height = image.size
    backbone.check_size(height, width)
    latent_size = backbone.latent_size(height, width)
    (placed,) = place([region], latent_size)
    if generator is None:
        raise ValueError("pass a torch.Generator: the region's noise comes from it (the original's seed)")
    rgb = image.convert("RGB")
    x0 = backbone.encode_images(backbone.preprocess([rgb], height, width))  # (1, C, h, w)
    noise = draw_noise(1, (backbone.latent_channels, *latent_size), generator, backbone.device, backbone.dtype)
    scheduler = build_scheduler(backbone.scheduler_config, sampler)
    scheduler.set_timesteps(num_inference_steps, device=backbone.device)
    cells = placed.cells.to(backbone.device, torch.bool)  # (h, w)
    start = torch.where(cells, noise, noised(scheduler, x0, noise, scheduler.timesteps[0]))  # (1, C, h, w)
    output = regional(
        backbone,
        prompt,
        [region],
        delta=delta,
        binding=binding,
        negative_prompt=negative_prompt,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        sampler=sampler,
        width=width,
        height=height,
        generator=generator,
        latents=start,
        controls=controls,
        on_step_end=[HoldOutside(x0, noise, placed.cells, scheduler)],
        on_step=on_step,
        cancel=cancel,
    )
    inside = pixel_region(region, placed.cells, (height, width))  # (H, W)
    painted = np.where(inside[..., None], np.asarray(output.images[0].convert("RGB")), np.asarray(rgb))
    return GenerationOutput([PIL.Image.fromarray(painted)], output.latents, output.notes)
