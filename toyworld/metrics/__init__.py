"""Toyworld's measurements: the quality gate every method is measured against on the bundled model.

- attribute accuracy: what a toyworld prompt asks for versus what the detector finds;
- concept present: a detected object matches a reference object's colour, shape and pattern;
- toy CLIP-T (text-image) and CLIP-I (image-image) cosine scores from the bundled toy-CLIP;
- pixel metrics (MSE, MAE, PSNR) inside and outside a mask, with no learned perceptual model.
"""

from __future__ import annotations

from .attributes import AttributeTally, match_objects, prompt_attribute_scores
from .concepts import concept_present
from .pixels import masked_mae, masked_mse, masked_psnr, psnr

__all__ = [
    "AttributeTally",
    "concept_present",
    "masked_mae",
    "masked_mse",
    "masked_psnr",
    "match_objects",
    "prompt_attribute_scores",
    "psnr",
]
