"""Tiny SD1.5- and SDXL-shaped pipelines built from config under a fixed seed.

Why: tests and the pre-toyworld demo need real diffusers components (every attention site, the real
processors, the real schedulers) but cannot download weights and must run in seconds on two CPU cores.
The tokenizer is the real CLIP BPE vocabulary from `assets/clip_tokenizer/`, so prompts tokenize exactly
as they do for SD1.5. Nothing here touches the network.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "assets" / "clip_tokenizer"
CLIP_VOCAB_SIZE = 49408


def ddim_scheduler() -> DDIMScheduler:
    """SD's DDIM configuration (scaled-linear betas 0.00085–0.012), the one every method here assumes."""
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def clip_tokenizer() -> CLIPTokenizer:
    if not (TOKENIZER_DIR / "vocab.json").is_file():
        raise FileNotFoundError(f"CLIP tokenizer files are missing from {TOKENIZER_DIR}")
    return CLIPTokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"), model_max_length=77)


def _text_config(hidden_size: int, projection_dim: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=projection_dim,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def _tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )


def tiny_sd15_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """SD1.5 layout in miniature: cross-attention at two resolutions, self- then cross-attention per block."""
    torch.manual_seed(seed)  # from-config init draws from the global RNG; pin it so every build is identical
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,  # diffusers reads this as the number of heads for SD1.x UNets
        norm_num_groups=32,
    )
    vae = _tiny_vae()
    text_encoder = CLIPTextModel(_text_config(32, 32))
    return StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=clip_tokenizer(),
        unet=unet.eval(),
        scheduler=ddim_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """SDXL layout in miniature: two text encoders, pooled embeddings, time ids, linear proj_in/out."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids * 8 + pooled text 32
        cross_attention_dim=64,  # text_encoder (32) ‖ text_encoder_2 (32)
        norm_num_groups=32,
    )
    vae = _tiny_vae()
    text_encoder = CLIPTextModel(_text_config(32, 32))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(32, 32))
    tokenizer = clip_tokenizer()
    return StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer=tokenizer,
        tokenizer_2=clip_tokenizer(),
        unet=unet.eval(),
        scheduler=ddim_scheduler(),
        image_encoder=None,
        feature_extractor=None,
        force_zeros_for_empty_prompt=True,
    )
