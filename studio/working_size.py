"""The size a job runs at: large inputs brought to the model's working size, and sizes that cannot fit refused.

Why: users feed phone photos (4032x3024) every day. Run at full size, a 512-pixel model draws repeated
objects, and its self-attention over 190,000 latent tokens needs tens of GB before the first step. So
an input larger than the model's working area is scaled down to that area, keeping its aspect and
multiples of the model's size step, unless the user asks for the full size. Any size is then checked
against the memory the device has, from an estimate of the largest tensors a run makes, and refused
before anything is allocated, with the estimate in the message.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from studio.errors import JobSpecError

GIB = 1024**3


def fit_to_area(width: int, height: int, area: int, multiple: int) -> tuple[int, int]:
    """(width, height) scaled down (never up) to at most `area` pixels, aspect kept, floored to `multiple`."""
    scale = min(1.0, math.sqrt(area / (width * height)))
    fitted_w = max(multiple, int(width * scale) // multiple * multiple)
    fitted_h = max(multiple, int(height * scale) // multiple * multiple)
    return fitted_w, fitted_h


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know of a model, read from its UNet and VAE configs."""

    vae_scale_factor: int  # pixels per latent cell (8 for SD and SDXL)
    unet_heads_at_full_latent: int  # attention heads of the first down block; 0 if it has no attention
    vae_channels_at_full_size: int  # the VAE decoder's last block width (128 for SD/SDXL)
    vae_mid_attention: bool  # the VAE's mid block attends over every latent cell (one head)

    @classmethod
    def of(cls, unet_config: dict, vae_config: dict) -> ModelShape:
        blocks = list(vae_config.get("block_out_channels") or [128])
        down = list(unet_config.get("down_block_types") or [])
        heads = unet_config.get("attention_head_dim") or 8  # diffusers' SD configs name the head count so
        heads = heads[0] if isinstance(heads, (list, tuple)) else heads
        return cls(
            vae_scale_factor=2 ** (len(blocks) - 1),
            unet_heads_at_full_latent=int(heads) if down and down[0].startswith("CrossAttn") else 0,
            vae_channels_at_full_size=int(blocks[0]),
            vae_mid_attention=bool(vae_config.get("mid_block_add_attention", True)),
        )


def estimate_peak_bytes(
    shape: ModelShape, width: int, height: int, *, rows: int, dtype_bytes: int, fused_attention: bool
) -> int:
    """The largest single allocation a run at this size makes, as a lower bound of its peak.

    Three candidates: the UNet's self-attention scores at full latent resolution (rows x heads x L^2,
    skipped when a fused kernel never forms them), the VAE decoder's activations at full pixel size
    (about four tensors of its last block's width alive at once), and the VAE mid block's single-head
    attention over every latent cell.
    """
    tokens = (width // shape.vae_scale_factor) * (height // shape.vae_scale_factor)
    unet_scores = 0 if fused_attention else rows * shape.unet_heads_at_full_latent * tokens**2 * dtype_bytes
    vae_activations = 4 * shape.vae_channels_at_full_size * width * height * dtype_bytes
    vae_scores = 0 if fused_attention or not shape.vae_mid_attention else tokens**2 * dtype_bytes
    return max(unet_scores, vae_activations, vae_scores)


def available_bytes(device: str) -> int | None:
    """Free memory on `device` ("cpu" or "cuda[:N]"), or None when it cannot be read."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None


def check_fits(estimate: int, available: int | None, width: int, height: int) -> None:
    """Refuse a size whose estimate exceeds the free memory, saying both figures."""
    if available is not None and estimate > available:
        raise JobSpecError(
            f"{width}x{height} needs about {estimate / GIB:,.1f} GiB at its peak, and {available / GIB:,.1f} GiB"
            " is free; choose a smaller --width/--height"
        )
