"""Launcher for our Triton attention kernel (:mod:`kernels.triton_kernel`).

triton is optional and slow to import, so nothing here imports it until a call needs it. It runs on
CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (a numpy interpreter: correct but very
slow, for tests on tiny shapes only).
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys

import torch

from .bias import BiasForm, as_4d

# Kernel BIAS_MODE constant = index of the form in this tuple.
_BIAS_MODES = ("none", "per_key", "full")


def triton_interpreting() -> bool:
    """Whether TRITON_INTERPRET=1 is set (triton then runs kernels on CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_unavailable_reason(device_type: str) -> str | None:
    """Why the triton backend cannot run on tensors of ``device_type``, or None."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install triton, CUDA machines only)"
    if device_type == "cuda":
        return None if torch.cuda.is_available() else "no CUDA device"
    if triton_interpreting():
        return _interpreter_mismatch()
    return f"triton runs {device_type} tensors only under TRITON_INTERPRET=1 (slow, for tests)"


def _interpreter_mismatch() -> str | None:
    """Why the interpreter cannot run our kernel although TRITON_INTERPRET=1, or None.

    triton decides at ``@triton.jit`` time whether a function is compiled or interpreted, including
    its own library functions (``tl.max``, ``tl.sum``). If triton was imported before the variable
    was set (torch imports it for inductor/FlexAttention), those stay compiled and the interpreter
    fails with "Cannot call @triton.jit'd outside of the scope of a kernel".
    """
    lang = sys.modules.get("triton.language")
    if lang is None or type(lang.max).__name__ == "InterpretedFunction":
        return None
    return (
        "TRITON_INTERPRET=1 was set after triton was imported; set it before anything imports triton "
        "(e.g. in the environment of a fresh process)"
    )


def _tile_sizes(head_dim: int) -> tuple[int, int, int, int]:
    """``(BLOCK_M, BLOCK_N, BLOCK_D, num_warps)``: head dim padded to a power of two (tl.dot needs >= 16).

    Bigger head dims get narrower key tiles so the q tile, the accumulator and a K/V tile still fit
    in registers/shared memory (hd160 -> BLOCK_D 256).
    """
    block_d = max(16, triton_next_pow2(head_dim))
    if block_d <= 64:
        return 64, 64, block_d, 4
    if block_d <= 128:
        return 64, 32, block_d, 4
    return 64, 32, block_d, 8


def triton_next_pow2(n: int) -> int:
    """Smallest power of two >= n (same as triton.next_power_of_2, without importing triton)."""
    return 1 << max(n - 1, 0).bit_length()


def triton_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, form: BiasForm
) -> torch.Tensor:
    """Attention through our Triton kernel; rows whose keys are all -inf give zeros (done in-kernel)."""
    from .triton_kernel import attention_fwd_kernel

    b, h, lq, d = q.shape
    lk = k.shape[2]
    out = torch.empty_like(q, memory_format=torch.contiguous_format)  # [B, H, Lq, D]
    bias4 = as_4d(bias, form)
    if bias4 is None:
        bias_arg, bias_strides = q, (0, 0, 0, 0)  # never read: BIAS_MODE 0 compiles the loads away
    else:
        bias_arg = bias4.expand(b, h, lq, lk)  # [B, H, Lq, Lk] view: broadcast dims have stride 0
        bias_strides = bias_arg.stride()
    block_m, block_n, block_d, num_warps = _tile_sizes(d)
    # fp32 inputs: exact fp32 products (like the other backends), not TF32, so results agree to 1e-5.
    # Other dtypes: the target's default (None), since the allowed names differ between NVIDIA and AMD.
    precision = "ieee" if q.dtype == torch.float32 else None
    grid = (math.ceil(lq / block_m), b * h)
    attention_fwd_kernel[grid](
        q, k, v, bias_arg, out,
        *q.stride(), *k.stride(), *v.stride(), *bias_strides, *out.stride(),
        h, lq, lk, d,
        (1.0 / math.sqrt(d)) * math.log2(math.e),
        BIAS_MODE=_BIAS_MODES.index(form),
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_D=block_d,
        INPUT_PRECISION=precision,
        num_warps=num_warps,
        num_stages=2,
    )  # fmt: skip
    return out  # fully masked rows are already zeros (in-kernel, see triton_kernel)
