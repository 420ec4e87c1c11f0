"""The controlled UNet calls the GPU suite times and checks: the batch layout and controls of each case.

Why one place: the speed rows, the FreeCustom rows and the oracle rows must run the same cases, so that a
speed figure and its correctness check describe one computation. Masks are blobs covering half of the
latent, so MRSA reads half of each reference's tokens (FreeCustom's concept masks cover about that).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from attention_processors import BatchLayout, Control, StepWindow
from attention_processors.multi_reference import MultiReferenceSelfAttention
from attention_processors.mutual_self_attention import MaskPair, MutualSelfAttention

ControlCase = tuple[BatchLayout, Callable[[], list[Control]]]


def half_mask(latent: int, which: int) -> torch.Tensor:
    """A [latent, latent] binary mask of one half of the image: top, left, bottom, right for which = 0..3."""
    mask = torch.zeros(latent, latent)
    half = latent // 2
    side = which % 4
    if side == 0:
        mask[:half] = 1
    elif side == 1:
        mask[:, :half] = 1
    elif side == 2:
        mask[half:] = 1
    else:
        mask[:, half:] = 1
    return mask


def mrsa_case(refs: int, latent: int) -> ControlCase:
    """FreeCustom: one target with CFG, `refs` reference rows (conditional half only), MRSA at its default sites."""
    layout = BatchLayout.with_cfg(["target"]) + BatchLayout.without_cfg(["reference"] * refs)
    return layout, lambda: [MultiReferenceSelfAttention(masks=[half_mask(latent, i) for i in range(refs)])]


def control_case(name: str, latent: int) -> ControlCase:
    """`none` (batch 2: one CFG step), `MRSA R=<n>`, or `MasaCtrl masked` (source and target with CFG, every step)."""
    if name == "none":
        return BatchLayout.with_cfg(["target"]), list
    if name.startswith("MRSA R="):
        return mrsa_case(int(name.removeprefix("MRSA R=")), latent)
    if name == "MasaCtrl masked":
        masks = MaskPair(half_mask(latent, 0), half_mask(latent, 1))
        return (
            BatchLayout.with_cfg(["source", "target"]),
            lambda: [MutualSelfAttention(steps=StepWindow(), masks=masks)],
        )
    raise ValueError(f"unknown control case {name!r}")
