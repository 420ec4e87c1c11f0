"""PyTorch SDPA backend (``torch.nn.functional.scaled_dot_product_attention``).

SDPA dispatches by itself: flash when there is no mask (on CUDA), memory-efficient or cuDNN with a
float mask, and a fused flash-style kernel on CPU with or without a mask. Our job is only to hand it
the bias in the cheapest form:

* per-key bias -> a ``[B, 1, 1, Lk]`` view (SDPA broadcasts it; no ``Lq x Lk`` tensor is built), or
  the drop/fold rewrite of :mod:`kernels.per_key`, which removes the bias entirely so SDPA can use
  its no-mask flash kernel; see :func:`per_key_plan` for when each is used;
* full bias -> passed as is, cast to q's dtype (SDPA requires a float mask to match the query dtype,
  and an fp32 mask with bf16/fp16 queries has hit a wrong-result bug in cuDNN, PyTorch PR #191612).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from .bias import BiasForm, as_4d, zero_dead_rows
from .per_key import drop_masked_keys, fold_is_free, fold_per_key_bias

PerKeyPlan = Literal["mask", "fold"]


def per_key_plan(device_type: str, head_dim: int) -> tuple[bool, PerKeyPlan]:
    """How SDPA runs a per-key bias: ``(drop_masked_keys?, "mask" | "fold")``.

    CUDA: always drop -inf keys (compute saved in proportion to the masked fraction). Then fold the
    finite weights into an extra channel when that channel is free (hd40/hd80: the flash kernel pads
    to 64/96 anyway), which moves the call from the memory-efficient/cuDNN-with-bias kernel to the
    no-mask flash/cuDNN kernel. Where folding would push the head dim to a bigger template (hd64 ->
    96, a 1.5x MMA cost) the broadcast ``[B, 1, 1, Lk]`` mask is cheaper: reading a per-key bias is
    ~one vector per key tile. This is reasoning from the published kernel figures
    (the FlashAttention-2 and PyTorch SDPA backend notes), not a measurement: no GPU was available when it was written.

    CPU: measured with bench/attention_kernels.py (B=2, H=8, L=1024, D=40, half the keys masked,
    1 thread, medians): no bias 41 ms; mask 44 ms; fold 53 ms; drop+mask 25 ms; drop+fold 27 ms. The
    CPU flash kernel reads a broadcast mask nearly for free while the fold adds copies, so the mask
    is used; dropping keys pays in proportion to the masked fraction.

    Not cached: it is a pure function of its arguments, which dynamo folds to a constant (a cached
    wrapper would be traced through with a warning).
    """
    if device_type == "cuda":
        return True, ("fold" if fold_is_free(head_dim) else "mask")
    return True, "mask"


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, form: BiasForm
) -> torch.Tensor:
    """Attention through SDPA; rows whose keys are all -inf give zeros."""
    if form == "per_key":
        return _sdpa_per_key(q, k, v, bias, *per_key_plan(q.device.type, q.shape[-1]))
    mask = as_4d(bias, form)
    if mask is not None and mask.dtype != q.dtype:
        mask = mask.to(q.dtype)  # [B|1, H|1, Lq|1, Lk]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, Lq, D]
    return zero_dead_rows(out, bias, form)


def _sdpa_per_key(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, drop: bool, plan: PerKeyPlan
) -> torch.Tensor:
    """Per-key bias through SDPA with an explicit plan (exposed for tests and the benchmark)."""
    d = q.shape[-1]
    # Dropping keys needs their count on the host (a data-dependent shape): a graph break under
    # torch.compile. The compiled path keeps every key with its -inf bias instead, which is exact.
    drop = drop and not torch.compiler.is_compiling()
    kk, vv, bb = drop_masked_keys(k, v, bias) if drop else (k, v, bias)  # [B, H, n, D] x2, [B|1, n]
    if plan == "fold":
        qf, kf, vf = fold_per_key_bias(q, kk, vv, bb)  # [B, H, L, D'] x3
        out = F.scaled_dot_product_attention(qf, kf, vf, scale=1.0)[..., :d]  # [B, H, Lq, D]
    else:
        mask = bb.to(q.dtype)[:, None, None, :]  # [B|1, 1, 1, n]: broadcast by SDPA, never expanded
        out = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask)  # [B, H, Lq, D]
    return zero_dead_rows(out, bias, "per_key")
