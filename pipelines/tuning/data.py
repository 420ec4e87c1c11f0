"""The training examples: concept images (already read and checked by the caller) as latents, masks and prompts.

Why latents once: the VAE is frozen in every recipe, so each image is encoded a single time (the posterior
mean, so a run is a deterministic function of its images and seed) instead of at every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor

from pipelines.backbone import Backbone


@dataclass(frozen=True)
class ConceptExamples:
    """N training examples, one row each."""

    latents: Tensor  # (N, C, h, w) scaled latents
    masks: Tensor | None  # (N, 1, h, w) in [0, 1] at latent size; None: the whole image counts
    prompts: tuple[str, ...]  # the caption of each example

    def __len__(self) -> int:
        return self.latents.shape[0]


def square_crop(image: PIL.Image.Image, size: int, resample: int = PIL.Image.Resampling.LANCZOS) -> PIL.Image.Image:
    """Resize the short side to `size` and centre-crop (the DreamBooth scripts' `--center_crop`)."""
    w, h = image.size
    scale = size / min(w, h)
    resized = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), resample)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


@torch.no_grad()
def encode_examples(
    backbone: Backbone,
    images: Sequence[PIL.Image.Image],
    prompts: Sequence[str],
    masks: Sequence[PIL.Image.Image | None] | None = None,
    resolution: int | None = None,
) -> ConceptExamples:
    """Encode images (any size; cropped square at `resolution`, default the model's) with their prompts and masks.

    A mask is white where the concept is; when any image has one, images without one count everywhere.
    """
    if len(images) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts for {len(images)} images")
    if not images:
        raise ValueError("no training images")
    size = resolution or backbone.default_size[0]
    pixels = backbone.preprocess([square_crop(im.convert("RGB"), size) for im in images], size, size)  # (N,3,H,W)
    latents = torch.cat([backbone.encode_images(p[None]) for p in pixels])  # (N, C, h, w)
    mask_tensor = None
    if masks is not None and any(m is not None for m in masks):
        h, w = latents.shape[-2:]
        rows = []
        for mask in masks:
            if mask is None:
                rows.append(torch.ones(1, h, w))
                continue
            grey = square_crop(mask.convert("L"), size, PIL.Image.Resampling.BILINEAR)
            full = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).float().view(1, 1, size, size) / 255
            rows.append(F.interpolate(full, size=(h, w), mode="area")[0])  # (1, h, w)
        mask_tensor = torch.stack(rows).to(latents.device, latents.dtype)  # (N, 1, h, w)
    return ConceptExamples(latents, mask_tensor, tuple(prompts))
