"""Normalising the task pipelines' inputs: prompt lists, per-item negatives, per-item noise."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

Generators = torch.Generator | Sequence[torch.Generator]


def as_list(value: str | Sequence[str], name: str) -> list[str]:
    """Normalise a prompt argument to a list of strings."""
    if isinstance(value, str):
        return [value]
    values = list(value)
    if not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} must be a string or a non-empty list of strings")
    return values


def negatives_for(negative_prompt: str | Sequence[str] | None, count: int) -> list[str] | None:
    """One negative prompt per item: a string applies to every item; None keeps the family default."""
    if negative_prompt is None:
        return None
    negatives = [negative_prompt] * count if isinstance(negative_prompt, str) else list(negative_prompt)
    if len(negatives) != count:
        raise ValueError(f"got {len(negatives)} negative prompts for {count} prompts")
    return negatives


def draw_noise(
    count: int, shape: tuple[int, int, int], generator: Generators, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Standard normal noise (count, *shape), drawn item by item so a batch reproduces single runs.

    Item i takes the first draw of `generator[i]` when a list is given (so item i of a batch equals a single
    run seeded like `generator[i]`), or the i-th consecutive draw of a single generator.
    """
    if isinstance(generator, torch.Generator):
        generators = [generator] * count
    else:
        generators = list(generator)
        if len(generators) != count:
            raise ValueError(f"got {len(generators)} generators for {count} items; pass one per item or just one")
    draws = [randn_tensor((1, *shape), generator=g, device=device, dtype=dtype) for g in generators]
    return torch.cat(draws)  # (count, C, h, w)
