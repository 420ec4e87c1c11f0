"""Write the trained components in the diffusers layout `StableDiffusionPipeline.from_pretrained` reads.

Layout: model_index.json, unet/, vae/, text_encoder/ (CLIPTextModel; the trainer later replaces it with the
tower fine-tuned alongside the UNet), tokenizer/, scheduler/ (DDIM),
image_encoder/ (CLIPVisionModelWithProjection), feature_extractor/ (64x64 CLIPImageProcessor), and clip/
(the full CLIPModel, whose projections give toy CLIP-T and CLIP-I scores). Safetensors only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from diffusers import AutoencoderKL, ModelMixin, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection, PreTrainedModel

from .models import build_scheduler, image_processor


def split_clip(clip: CLIPModel) -> tuple[CLIPTextModel, CLIPVisionModelWithProjection]:
    """The text tower as SD's text_encoder and the vision tower as IP-Adapter's image_encoder."""
    text = CLIPTextModel(clip.config.text_config)
    text.load_state_dict(clip.text_model.state_dict())
    vision = CLIPVisionModelWithProjection(clip.config.vision_config)
    vision.vision_model.load_state_dict(clip.vision_model.state_dict())
    vision.visual_projection.load_state_dict(clip.visual_projection.state_dict())
    return text.eval(), vision.eval()


def save_pipeline(out: Path, *, clip: CLIPModel, tokenizer: CLIPTokenizer, vae: AutoencoderKL,
                  unet: UNet2DConditionModel) -> None:
    text, vision = split_clip(clip)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=build_scheduler(),
        safety_checker=None, feature_extractor=image_processor(), image_encoder=vision,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)
    clip.save_pretrained(str(out / "clip"), safe_serialization=True)


def save_component_atomically(out: Path, name: str, model: ModelMixin | PreTrainedModel) -> None:
    """Replace out/<name> so that a reader never sees a half-written component folder for long."""
    tmp = out / f"{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp), safe_serialization=True)
    if (out / name).exists():
        shutil.rmtree(out / name)
    tmp.rename(out / name)
