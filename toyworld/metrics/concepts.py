"""Concept present: does a detected object carry a reference object's colour, shape and pattern?

Why these three: they are the appearance a personalization method must transfer; size and position
are what a prompt is free to change. The held-out shapes and the two-tone pattern are in the detector's
vocabulary here, so a concept the base model never saw can still be recognised.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..detector import Detection, detect
from ..vocab import ALL_PATTERNS, ALL_SHAPES


def _matches(d: Detection, shape: str, color: str, pattern: str, color2: str | None) -> bool:
    if (d.shape, d.color, d.pattern) != (shape, color, pattern):
        return False
    return pattern != "twotone" or d.color2 == color2


def concept_present(image: np.ndarray | Image.Image, *, shape: str, color: str, pattern: str = "plain",
                    color2: str | None = None, region: np.ndarray | None = None) -> bool:
    """True if some object (mostly inside `region`, when given) matches the reference."""
    found = detect(image, shapes=ALL_SHAPES, patterns=ALL_PATTERNS)
    for d in found.objects:
        if region is not None and (d.mask & np.asarray(region, bool)).sum() < 0.5 * d.mask.sum():
            continue
        if _matches(d, shape, color, pattern, color2):
            return True
    return False
