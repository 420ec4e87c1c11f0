"""Image prompts to image tokens: the model's CLIP vision tower, then the adapter's projection.

It follows diffusers' `encode_image` so the tokens equal those `pipe.load_ip_adapter` would use: the base
adapter reads the tower's `image_embeds` and takes zeros as the negative embedding; Plus and Full-face read
the penultimate hidden states (`hidden_states[-2]`, which keep the patches' spatial detail) and take the
tower's output for an all-zero image as the negative.
"""

from __future__ import annotations

import PIL.Image
import torch
from torch import Tensor, nn

from pipelines.ip_adapter_weights import AdapterWeights


def image_encoder_of(pipe: object) -> tuple[nn.Module, object]:
    """The pipeline's (image_encoder, feature_extractor), or a ValueError saying the model lacks one."""
    encoder = getattr(pipe, "image_encoder", None)
    extractor = getattr(pipe, "feature_extractor", None)
    if encoder is None or extractor is None:
        absent = "image_encoder" if encoder is None else "feature_extractor"
        raise ValueError(
            f"this model has no {absent}, which an image prompt needs: use a model folder with an "
            "image_encoder/ (a CLIPVisionModelWithProjection) and a feature_extractor/"
        )
    return encoder, extractor


@torch.no_grad()
def encode_image_prompt(
    weights: AdapterWeights, projection: nn.Module, encoder: nn.Module, extractor: object, image: PIL.Image.Image
) -> tuple[Tensor, Tensor]:
    """(tokens, negative tokens), each [T, C], for one image through one adapter."""
    dtype = next(encoder.parameters()).dtype
    device = next(encoder.parameters()).device
    pixels = extractor(image.convert("RGB"), return_tensors="pt").pixel_values.to(device, dtype)  # [1, 3, S, S]
    if weights.uses_hidden_states:
        embeds = encoder(pixels, output_hidden_states=True).hidden_states[-2]  # [1, P+1, hidden]
        negative = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
    else:
        embeds = encoder(pixels).image_embeds  # [1, E]
        negative = torch.zeros_like(embeds)
    if embeds.shape[-1] != weights.image_embed_dim:
        source = "hidden size" if weights.uses_hidden_states else "image_embeds width"
        raise ValueError(
            f"IP-Adapter {weights.name} expects image features of width {weights.image_embed_dim}, but this model's "
            f"image encoder gives {embeds.shape[-1]} ({source}): the adapter was trained with another image encoder"
        )
    param = next(projection.parameters())
    both = torch.cat([negative, embeds]).to(param.device, param.dtype)  # [2, ...]
    tokens = projection(both)  # [2, T, C]
    if tokens.shape[-1] != weights.cross_attention_dim:
        raise ValueError(
            f"IP-Adapter {weights.name} is inconsistent: its projection gives tokens of width {tokens.shape[-1]}, "
            f"its image keys/values take {weights.cross_attention_dim}"
        )
    return tokens[1], tokens[0]
