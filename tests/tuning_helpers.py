"""Shared helpers of the tuning tests: tiny concept images and a few seeded training steps on a tiny pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipelines.backbone import Backbone
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline
from pipelines.tuning.data import encode_examples
from pipelines.tuning.recipe import Recipe
from pipelines.tuning.trainer import TrainConfig, TrainResult, train

PROMPT = "a sks star in the center"


def concept_images(count: int = 3, size: int = 64) -> list[Image.Image]:
    """Seeded noise images with a bright square: something a few steps can learn."""
    images = []
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 80, (size, size, 3), dtype=np.uint8)
        pixels[16:48, 16:48] = (230, 200, 30)
        images.append(Image.fromarray(pixels))
    return images


def write_concept_folder(folder: Path, count: int = 3, size: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(concept_images(count, size)):
        image.save(folder / f"img_{i}.png")
    return folder


def tiny_backbone(family: str = "sd15") -> Backbone:
    return Backbone.from_pipeline(tiny_sd15_pipeline() if family == "sd15" else tiny_sdxl_pipeline())


def trained(
    recipe: Recipe, family: str = "sd15", steps: int = 2, lr: float = 5e-2, checkpoints: Path | None = None, **kw
) -> tuple[Backbone, TrainResult]:
    """A tiny pipeline tuned `steps` steps with a large learning rate (so the tuned weights differ visibly)."""
    torch.set_num_threads(1)
    backbone = tiny_backbone(family)
    examples = encode_examples(backbone, concept_images(), [PROMPT] * 3)
    config = TrainConfig(steps=steps, learning_rate=lr, batch_size=2, seed=0, checkpoint_every=1)
    result = train(backbone, recipe, examples, config, checkpoints=checkpoints, **kw)
    return backbone, result
