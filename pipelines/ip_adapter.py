"""Image prompts for any pipeline: files, images, scales and masks in; one `IPAdapter` control out.

The control goes into any pipeline's `controls=`, next to any other method's, so an image prompt composes
with FreeCustom, MasaCtrl or regional prompting in one call (diffusers' `load_ip_adapter` would replace
their processors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import PIL.Image
from torch import Tensor, nn

from attention_processors.ip_adapter import ImageBranch, IPAdapter
from attention_processors.ip_adapter_settings import IP_ADAPTER
from attention_processors.selection import StepWindow
from pipelines.backbone import Backbone
from pipelines.ip_adapter_images import encode_image_prompt, image_encoder_of
from pipelines.ip_adapter_scales import BlockScales, site_scales
from pipelines.ip_adapter_weights import AdapterWeights, build_projection, site_weights

if TYPE_CHECKING:
    from pipelines.ip_adapter_faceid import FacePrompt


@dataclass(frozen=True)
class ImagePrompt:
    """One image prompt: the image, the adapter it goes through, its strength and optional region."""

    image: PIL.Image.Image
    adapter: AdapterWeights
    # One scale everywhere, or per block as diffusers' `set_ip_adapter_scale` takes it (InstantStyle); blocks
    # left out of a dict get 0, as in diffusers.
    scale: float | BlockScales = IP_ADAPTER.scale
    mask: Tensor | None = None  # [H, W] in [0, 1] (e.g. from diffusers' IPAdapterMaskProcessor); None: everywhere


def image_prompt_control(
    backbone: Backbone, prompts: Sequence[ImagePrompt | FacePrompt], steps: StepWindow | None = None
) -> IPAdapter:
    """Encode every image prompt with the model's image encoder (every face prompt with its face models) and
    return the one control that applies them all; with face prompts it also carries their FaceID LoRAs."""
    from pipelines.ip_adapter_faceid import FaceIDAdapter, FacePrompt, face_branches

    steps = steps if steps is not None else StepWindow(IP_ADAPTER.start, IP_ADAPTER.end)
    faces = [p for p in prompts if isinstance(p, FacePrompt)]
    images = [p for p in prompts if not isinstance(p, FacePrompt)]
    for prompt in images:
        if prompt.adapter.is_face:
            raise ValueError(
                f"IP-Adapter {prompt.adapter.name} is a FaceID adapter: give a face prompt (FacePrompt, --face IMG)"
            )
    branches = _image_branches(backbone, images) if images else []
    if not faces:
        return IPAdapter(branches, steps=steps)
    found, loras = face_branches(backbone, faces)
    return FaceIDAdapter([*branches, *found], steps=steps, unet_loras=tuple(loras))


def _image_branches(backbone: Backbone, prompts: Sequence[ImagePrompt]) -> list[ImageBranch]:
    encoder, extractor = image_encoder_of(backbone.pipe)
    unet = backbone.unet
    projections: dict[int, nn.Module] = {}
    branches = []
    for prompt in prompts:
        weights = site_weights(prompt.adapter, unet)  # first: a wrong base model is the likeliest mistake
        key = id(prompt.adapter)
        if key not in projections:
            projections[key] = build_projection(prompt.adapter, unet)
        tokens, negative = encode_image_prompt(prompt.adapter, projections[key], encoder, extractor, prompt.image)
        branches.append(
            ImageBranch(
                weights=weights,
                tokens=tokens,
                negative_tokens=negative,
                scale=site_scales(unet, prompt.scale),
                mask=prompt.mask,
            )
        )
    return branches
