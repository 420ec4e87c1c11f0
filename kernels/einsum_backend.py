"""The einsum reference: the oracle every other backend is tested against.

It materialises the full ``[B, H, Lq, Lk]`` score matrix in float32 and does nothing clever, so that
it is easy to read and hard to get wrong. It is slow and memory hungry by design; never pick it for
real work.
"""

from __future__ import annotations

import math

import torch

from .bias import BiasForm, as_4d


def einsum_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, form: BiasForm
) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(D) + bias) v in float32; rows whose keys are all -inf give zeros."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) * scale  # [B, H, Lq, Lk]
    bias4 = as_4d(bias, form)
    if bias4 is not None:
        scores = scores + bias4.float()  # [B, H, Lq, Lk]
    dead = (scores == float("-inf")).all(dim=-1, keepdim=True)  # [B, H, Lq, 1]
    # A dead row would be softmax(-inf, ..., -inf) = NaN; give it finite scores, zero it after.
    scores = scores.masked_fill(dead, 0.0)  # [B, H, Lq, Lk]
    probs = torch.softmax(scores, dim=-1)  # [B, H, Lq, Lk]
    out = torch.einsum("bhqk,bhkd->bhqd", probs, v.float())  # [B, H, Lq, D]
    out = out.masked_fill(dead, 0.0)  # [B, H, Lq, D]
    return out.to(q.dtype)
