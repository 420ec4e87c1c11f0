"""Masks of a concept from where its word attends: the automatic mask when the user gives none.

One conditional UNet pass per image at a mid-schedule noise level, with the cross-attention maps of the
concept's tokens recorded (only at cross-attention sites; everything else stays fused), averaged over
heads and sites, min-max normalised and thresholded, as MasaCtrl's automatic mask does.
"""

from __future__ import annotations

from collections.abc import Sequence

import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor

from attention_processors import BatchLayout, attention_control
from attention_processors.attention_maps import CrossAttentionMaps
from pipelines.backbone import Backbone
from pipelines.batch_plan import BatchPlan


def token_positions(backbone: Backbone, caption: str, word: str) -> list[int]:
    """Positions of `word`'s tokens inside the tokenized caption (after the start token)."""
    tokenizer = backbone.pipe.tokenizer
    ids = tokenizer(caption).input_ids
    target = tokenizer(word, add_special_tokens=False).input_ids
    for start in range(len(ids) - len(target) + 1):
        if target and ids[start : start + len(target)] == target:
            return list(range(start, start + len(target)))
    raise ValueError(f"the concept word {word!r} does not occur in the caption {caption!r}")


@torch.no_grad()
def concept_masks(
    backbone: Backbone,
    images: Sequence[PIL.Image.Image],
    captions: Sequence[str],
    words: Sequence[str],
    *,
    noise_level: float = 0.5,
    threshold: float = 0.5,
    seed: int = 0,
) -> list[Tensor]:
    """One binary mask [H, W] per image, at the image's own size, for `words[i]` in `captions[i]`."""
    if not len(images) == len(captions) == len(words):
        raise ValueError("give one caption and one concept word per image")
    masks = []
    for image, caption, word in zip(images, captions, words, strict=False):
        multiple = backbone.size_multiple
        height, width = (
            max(multiple, image.height // multiple * multiple),
            max(multiple, image.width // multiple * multiple),
        )
        latents = backbone.encode_images(backbone.preprocess([image], height, width))  # (1, C, h, w)
        scheduler = backbone.ddim_scheduler()
        t = torch.tensor([int(noise_level * (scheduler.config.num_train_timesteps - 1))])
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents)
        noisy = scheduler.add_noise(latents, noise, t)
        layout = BatchLayout.without_cfg(["reference"])
        embeds = backbone.encode_prompts([caption], None, cfg=False)
        conditioning = backbone.conditioning(embeds, BatchPlan.of(layout).rows, (height, width))
        recorder = CrossAttentionMaps(
            token_indices={0: token_positions(backbone, caption, word)}, size=latents.shape[-2:]
        )
        with attention_control(backbone.unet, [recorder]) as state:
            state.update(index=0, total=1, timestep=int(t), layout=layout, latent_size=tuple(latents.shape[-2:]))
            backbone.unet(
                noisy,
                t.to(backbone.device),
                encoder_hidden_states=conditioning.encoder_hidden_states,
                added_cond_kwargs=conditioning.added_cond_kwargs,
            )
        heat = recorder.maps()[0][None, None]  # [1, 1, h, w] in [0, 1]
        heat = F.interpolate(heat, size=(image.height, image.width), mode="bilinear", align_corners=False)[0, 0]
        masks.append((heat >= threshold).float())
    return masks
