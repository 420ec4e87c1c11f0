"""What toyworld offers the studio, declared as entry points in pyproject.toml (see studio/providers.py).

- `diffusion_studio.models`: the name `toyworld` resolves to the bundled model folder;
- `diffusion_studio.masks`: on the toyworld model, the detector's largest object is an image's
  automatic foreground mask, because toyworld scenes are exactly what the detector reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import toyworld_path

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

MODEL_NAME = "toyworld"  # the entry point names in pyproject.toml


def model_folder() -> Path:
    """The folder the `toyworld` model reference loads from."""
    return toyworld_path()


def foreground_mask(image: Image.Image, *, model: str, backbone: object) -> np.ndarray | None:
    """The largest detected object's mask [H, W] on the toyworld model; all False when there is none."""
    import numpy as np

    from .detector import detect

    if model != MODEL_NAME:
        return None
    objects = detect(image).objects
    return objects[0].mask if objects else np.zeros((image.height, image.width), dtype=bool)
