"""Seeds for batch size x batch count, as AUTOMATIC1111 numbers them, and one generator per image.

Why one generator per image: `generate` draws item i's initial noise (and a stochastic sampler's per-step
noise) from generator i alone, so image i of a batch is the image a single run with seed `seeds[i]` gives.
"""

from __future__ import annotations

import torch


def batch_seeds(seed: int, batch_size: int, batch_count: int = 1) -> list[list[int]]:
    """Seeds per UNet call: call b holds `seed + b * batch_size + i` for i < batch_size (A1111's rule)."""
    if batch_size < 1 or batch_count < 1:
        raise ValueError(f"batch size and count must be >= 1, got {batch_size} and {batch_count}")
    return [[seed + b * batch_size + i for i in range(batch_size)] for b in range(batch_count)]


def seeded_generators(seeds: list[int], device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One fresh `torch.Generator` per seed, for `generate(..., generator=...)`.

    CPU by default, as diffusers does for reproducible noise across devices: the noise is drawn on the
    generator's device and moved to the model's.
    """
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
