"""Training data: scenes drawn only from the training distribution, rendered once and kept in memory.

Why pre-render: rendering costs ~2 ms a scene, small next to a training step, but doing it once lets
every stage (CLIP, VAE, UNet) see the same fixed, seed-determined set. Captions are re-drawn per step
from the grammar (with a per-step Generator), so the text side stays varied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..captions import caption
from ..world import SceneSpec, render, sample_scene


@dataclass(frozen=True)
class SceneSet:
    specs: tuple[SceneSpec, ...]
    images: np.ndarray  # (N, H, W, 3) uint8
    object_masks: np.ndarray  # (N, H, W) bool, union of object masks

    def __len__(self) -> int:
        return len(self.specs)

    def captions(self, idx: np.ndarray, rng: np.random.Generator) -> list[str]:
        return [caption(self.specs[i], rng) for i in idx]


def build_scene_set(n: int, seed: int) -> SceneSet:
    """n scenes from the default (held-out-free) sampler, seeded by `seed`."""
    rng = np.random.default_rng(seed)
    specs, images, masks = [], [], []
    for _ in range(n):
        spec = sample_scene(rng)
        r = render(spec)
        specs.append(spec)
        images.append(r.image)
        masks.append(np.any([o.mask for o in r.objects], axis=0))
    return SceneSet(tuple(specs), np.stack(images), np.stack(masks))


def to_unit_range(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1], the VAE's input range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0

