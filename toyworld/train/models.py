"""Configurations of the toyworld's real model classes, sized for a 2-core CPU training budget.

Why these shapes: the studio's methods hook every attention site, so the UNet keeps SD's layout
(cross-attention down blocks at 16x16 and 8x8, a plain block at 4x4, a cross-attention mid block,
mirrored up blocks) at toy width; CLIP keeps SD's 77-token text interface; the VAE downsamples x4.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextConfig, CLIPVisionConfig

from ..vocab import IMAGE_SIZE
from .tokenizer import MAX_LENGTH

TEXT_HIDDEN = 128
PROJECTION_DIM = 128
LATENT_CHANNELS = 4


def clip_config(vocab_size: int, bos_token_id: int, eos_token_id: int) -> CLIPConfig:
    text = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_HIDDEN, intermediate_size=4 * TEXT_HIDDEN, num_hidden_layers=4,
        num_attention_heads=4, max_position_embeddings=MAX_LENGTH, projection_dim=PROJECTION_DIM,
        hidden_act="quick_gelu", bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=eos_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, image_size=IMAGE_SIZE,
        patch_size=8, num_channels=3, projection_dim=PROJECTION_DIM, hidden_act="quick_gelu",
    )
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=PROJECTION_DIM)


def build_clip(vocab_size: int, bos_token_id: int, eos_token_id: int) -> CLIPModel:
    return CLIPModel(clip_config(vocab_size, bos_token_id, eos_token_id))


def image_processor() -> CLIPImageProcessor:
    """CLIP preprocessing for 64x64 inputs: no resize to 224, CLIP's mean/std normalisation."""
    return CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": IMAGE_SIZE}, do_center_crop=True,
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_rescale=True, do_normalize=True,
        do_convert_rgb=True,
    )


def build_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64), layers_per_block=1, latent_channels=LATENT_CHANNELS,
        norm_num_groups=32, sample_size=IMAGE_SIZE, scaling_factor=1.0,
    )


def build_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 4, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=(64, 128, 128), layers_per_block=1, cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=4, norm_num_groups=32, transformer_layers_per_block=1,
    )


def build_scheduler() -> DDIMScheduler:
    """SD's DDIM configuration (scaled-linear betas 0.00085-0.012, 1000 steps)."""
    return DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
    )
