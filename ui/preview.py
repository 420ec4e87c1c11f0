"""A cheap picture of the latents during a run: no VAE, a few tensor operations per preview.

Why: a full VAE decode every step would cost about as much as the step itself on a small model and far
more on SDXL. Users of A1111/ComfyUI know the "approx cheap" / latent2rgb preview: the latents' first
three channels, each stretched to the visible range, upscaled by the VAE's factor so it sits where the
image will be. It shows where things are and how settled they are, not their colours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from torch import Tensor

UPSCALE = 8  # the SD VAE's downsampling factor; the preview is shown at roughly the output's size


def latent_preview(latents: Tensor, *, upscale: int = UPSCALE) -> Image.Image:
    """An RGB image of the first stream's latents (N, C, h, w): channels 0-2 (repeated if fewer), per
    channel min-max stretched to 0..255, nearest-upscaled."""
    first = latents[0].detach().float().cpu()  # (C, h, w)
    channels = first[:3] if first.shape[0] >= 3 else first[:1].expand(3, -1, -1)
    low = channels.amin(dim=(1, 2), keepdim=True)
    high = channels.amax(dim=(1, 2), keepdim=True)
    scaled = (channels - low) / (high - low).clamp_min(1e-6)  # (3, h, w) in 0..1
    pixels = (scaled.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (h, w, 3)
    image = Image.fromarray(pixels, "RGB")
    return image.resize((image.width * upscale, image.height * upscale), Image.Resampling.NEAREST)
