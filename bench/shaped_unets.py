"""Full-size UNets with random weights for the device benchmarks, and call inputs of the right shapes.

SD1.5's shape lives in bench/attention_overhead.py (`sd15_shaped_unet`, 859.5 M parameters); this file adds
SDXL base's (the config of stabilityai/stable-diffusion-xl-base-1.0's UNet: 2,567,463,684 parameters, two
text encoders' 2048-wide states, pooled text (B, 1280) and six time ids (B, 6) as added conditioning).
Random weights: the figures these give are speed, memory and agreement between implementations, not
images. Build them inside `with torch.device(...)` to initialise the weights on the GPU directly.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel

VAE_SCALE = 8  # pixels per latent cell in SD1.x and SDXL: 512 px -> 64, 1024 px -> 128

SDXL_BASE_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (5, 10, 20),  # read by diffusers as heads per level: 64-wide heads everywhere
    "transformer_layers_per_block": (1, 2, 10),
    "use_linear_projection": True,
    "cross_attention_dim": 2048,  # CLIP ViT-L (768) ‖ OpenCLIP bigG (1280)
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,  # pooled text 1280 + 6 time ids x 256
    "norm_num_groups": 32,
}


def sdxl_shaped_unet() -> UNet2DConditionModel:
    """SDXL base's UNet config, random weights (seeded, like `sd15_shaped_unet`)."""
    torch.manual_seed(0)
    return UNet2DConditionModel(**SDXL_BASE_UNET).eval()


def call_inputs(
    unet: UNet2DConditionModel, batch: int, latent: int, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> dict:
    """Random UNet inputs for `batch` rows at a `latent`² latent, with SDXL's added conditioning when the UNet
    takes it (pooled text and time ids sized from its config, the time ids of a square image of that size)."""
    g = torch.Generator().manual_seed(seed)
    config = unet.config
    inputs = {
        "sample": torch.randn(batch, config.in_channels, latent, latent, generator=g).to(
            device, dtype
        ),  # (B, C, h, w)
        "encoder_hidden_states": torch.randn(batch, 77, config.cross_attention_dim, generator=g).to(device, dtype),
    }
    if config.addition_embed_type == "text_time":
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        px = float(latent * VAE_SCALE)
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, generator=g).to(device, dtype),  # (B, 1280) for SDXL
            "time_ids": torch.tensor([[px, px, 0.0, 0.0, px, px]] * batch).to(device, dtype),  # (B, 6)
        }
    return inputs
