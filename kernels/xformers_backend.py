"""xformers backend (``xformers.ops.memory_efficient_attention``), CUDA only.

xformers wants ``[B, L, H, D]`` tensors (a transpose view of ours, no copy) and a tensor bias of the
exact shape ``[B, H, Lq, Lk]`` whose strides, except the last, are multiples of 16 bytes. Broadcast
dims may have stride 0, so a per-key bias is stored once as ``[B, 1, 1, Lk_padded]`` and *expanded*
to ``[B, H, Lq, Lk]``: nothing of size ``Lq x Lk`` is allocated (diffusers' own xformers path does
allocate one).
"""

from __future__ import annotations

import functools
import importlib

import torch

from .bias import BiasForm, as_4d, zero_dead_rows


@functools.lru_cache(maxsize=1)
def xformers_import_error() -> str | None:
    """Why ``xformers.ops`` cannot be imported, or None. Imported on first call, never at import time."""
    try:
        importlib.import_module("xformers.ops")
    except Exception as exc:  # ImportError, or a binary built for another torch
        return f"xformers is not importable ({type(exc).__name__}: {exc})".splitlines()[0]
    return None


def _aligned_bias(bias4: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A copy of ``bias4`` (its own, un-broadcast shape) in ``dtype`` whose last dim is padded to 16 bytes."""
    align = _align(dtype)
    *lead, lk = bias4.shape
    padded = (lk + align - 1) // align * align
    buf = bias4.new_empty(*lead, padded, dtype=dtype)  # [b, h, lq, Lk_pad]
    buf[..., :lk] = bias4
    return buf[..., :lk]


def _align(dtype: torch.dtype) -> int:
    """Elements per 16 bytes: 8 for fp16/bf16, 4 for fp32 (xformers' _check_bias_alignment)."""
    return 128 // torch.finfo(dtype).bits


def _is_aligned(bias: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether xformers accepts ``bias`` as is: unit last stride, other strides multiples of 16 bytes."""
    align = _align(dtype)
    return bias.stride(-1) == 1 and all(s % align == 0 for s in bias.stride()[:-1])


def xformers_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, form: BiasForm
) -> torch.Tensor:
    """Attention through xformers' memory-efficient kernel; rows whose keys are all -inf give zeros."""
    import xformers.ops as xops

    b, h, lq, _ = q.shape
    lk = k.shape[2]
    attn_bias = None
    bias4 = as_4d(bias, form)
    if bias4 is not None:
        attn_bias = bias4.expand(b, h, lq, lk)  # [B, H, Lq, Lk] view, stride 0 on broadcast dims
        if bias4.dtype != q.dtype or not _is_aligned(attn_bias, q.dtype):
            attn_bias = _aligned_bias(bias4, q.dtype).expand(b, h, lq, lk)  # [B, H, Lq, Lk] view
    out = xops.memory_efficient_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=attn_bias
    )  # [B, Lq, H, D]
    return zero_dead_rows(out.transpose(1, 2), bias, form)  # [B, H, Lq, D]
