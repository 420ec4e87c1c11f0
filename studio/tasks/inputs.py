"""Images and masks a method job names, with the automatic mask when a user gives none."""

from __future__ import annotations

from typing import TYPE_CHECKING

from studio.errors import InputError
from studio.images import open_image
from studio.masks import MaskError, load_mask

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from pipelines.backbone import Backbone


def image_and_mask(
    image_path: str,
    mask_path: str | None,
    *,
    backbone: Backbone,
    model: str,
    caption: str = "",
    concept: str | None = None,
    name: str = "image",
) -> tuple[Image.Image, torch.Tensor]:
    """The image and its foreground mask [H, W]: the user's, else derived automatically.

    Automatic masks: the mask provider of the model's family when one serves the model (studio/providers.py),
    otherwise the concept word's cross-attention map.
    """
    image = open_image(image_path)
    if mask_path:
        return image, load_mask(mask_path, expected_size=image.size, name=f"{name} mask")
    return image, auto_mask(image, backbone=backbone, model=model, caption=caption, concept=concept, name=name)


def auto_mask(image: Image.Image, *, backbone: Backbone, model: str, caption: str, concept: str | None, name: str):
    from studio.providers import provided_mask

    provided = provided_mask(image, model=model, backbone=backbone)
    if provided is not None:
        if not bool(provided.any()):
            raise MaskError(f"{name}: no object found to mask automatically; give a mask")
        return provided
    if not concept:
        raise InputError(
            f"{name}: give a mask, or a concept word whose attention can make one"
            f" (no automatic-mask provider serves the model {model!r})"
        )
    from pipelines.concept_masks import concept_masks

    text = caption if concept in caption else f"{caption} {concept}".strip()
    mask = concept_masks(backbone, [image], [text], [concept])[0]
    if not bool(mask.any()):
        raise MaskError(f"{name}: the automatic mask for {concept!r} is empty; give a mask")
    return mask
