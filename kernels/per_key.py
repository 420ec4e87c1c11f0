"""Structure tricks for a per-key bias (performance.md 3.3(a)).

FreeCustom's weighted mask depends only on the key: ``logits[b, h, i, j] = q_i·k_j / sqrt(D) + w[b, j]``
with ``w = -inf`` on masked keys. Two exact rewrites keep it on a no-bias (flash) kernel:

* **Drop** the -inf keys: gather the kept keys of each batch row to the front and cut K/V at the
  largest kept count. Rows with fewer kept keys keep some masked keys (still -inf) as padding. This
  is a compute *reduction* proportional to the masked fraction.
* **Fold** the finite weights into one extra channel: ``q' = [q / sqrt(D), 1]``, ``k' = [k, w]``,
  ``v' = [v, 0]``, attention scale 1. Then ``q'·k' = q·k / sqrt(D) + w`` exactly, and the kernel sees
  no bias at all. Flash kernels pad the head dim to a compiled template (hd40 -> 64, hd80 -> 96), so
  for those head dims the extra channel costs nothing.

Both are pure functions of their inputs; the SDPA backend decides when to use them.
"""

from __future__ import annotations

import math

import torch

# Flash-attention head-dim templates (Dao-AILab flash-attention static_switch.h HEADDIM_SWITCH).
_FLASH_HEADDIM_TEMPLATES = (32, 64, 96, 128, 160, 192, 224, 256)

# Finite stand-in for -inf inside a folded channel. exp(-1e4) underflows to exactly 0 in the fp32
# accumulators every kernel uses, and -1e4 is representable in fp16 and bf16. A real -inf would
# reach the kernel's max-subtraction and can turn a whole row into NaN.
FOLD_MASK_VALUE = -1.0e4


def _flash_template(head_dim: int) -> int:
    """The head dim a flash kernel actually computes with (the next compiled template)."""
    for t in _FLASH_HEADDIM_TEMPLATES:
        if head_dim <= t:
            return t
    return head_dim


def folded_head_dim(head_dim: int) -> int:
    """Head dim after folding: one extra channel, rounded up to a multiple of 8 (what SDPA pads to anyway)."""
    return (head_dim + 1 + 7) // 8 * 8


def fold_is_free(head_dim: int) -> bool:
    """True when the extra channel fits in the padding a flash kernel already computes (hd40, hd80, hd120...)."""
    return _flash_template(folded_head_dim(head_dim)) == _flash_template(head_dim)


def drop_masked_keys(
    k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, min_saving: float = 0.125
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Remove keys whose per-key bias is -inf, returning ``(k', v', bias')`` with fewer keys.

    k, v: [B, H, Lk, D]; bias: [B|1, Lk]. Kept keys stay in their original order at the front of each
    row; rows with fewer kept keys are padded with their own masked keys, which still carry -inf, so
    the result is exact. The new length is the largest kept count rounded up to a multiple of 8.
    Returns the inputs unchanged when fewer than ``min_saving`` of the keys would go (the gather
    copies K and V, which only pays when it removes real work).

    Needs one device->host sync to learn the new length; callers under CUDA graphs should not use it.
    """
    b, h, lk, d = k.shape
    keep = bias != float("-inf")  # [B|1, Lk]
    n_keep = max(int(keep.sum(dim=-1).max()), 1)
    if n_keep > (1.0 - min_saving) * lk:
        return k, v, bias
    # Round up to a multiple of 8 (with more masked keys): aligned rows suit the CUDA kernels.
    n_keep = min(lk, (n_keep + 7) // 8 * 8)
    # A stable sort on "is masked" puts kept keys first, each group in its original order.
    order = torch.argsort((~keep).to(torch.int8), dim=-1, stable=True)[:, :n_keep]  # [B|1, n]
    bias_kept = bias.gather(-1, order)  # [B|1, n]
    if order.shape[0] == 1:
        idx = order[0]  # [n]
        return k.index_select(2, idx), v.index_select(2, idx), bias_kept  # [B, H, n, D] x2
    idx = order[:, None, :, None].expand(b, h, n_keep, d)  # [B, H, n, D]
    return k.gather(2, idx), v.gather(2, idx), bias_kept


def fold_per_key_bias(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fold a per-key bias into an extra channel; attend with ``scale=1`` and slice ``[..., :D]`` after.

    q: [B, H, Lq, D]; k, v: [B, H, Lk, D]; bias: [B|1, Lk]. Returns q', k', v' with head dim
    :func:`folded_head_dim` (D + 1 rounded up to 8; the extra padding channels are zeros).
    -inf weights become :data:`FOLD_MASK_VALUE`, which softmax turns into exact zeros; a finite
    weight below it is clamped to it (only matters when *every* key of a row is below -1e4).
    """
    b, h, lq, d = q.shape
    lk = k.shape[2]
    dp = folded_head_dim(d)
    scale = 1.0 / math.sqrt(d)
    qf = q.new_zeros(b, h, lq, dp)  # [B, H, Lq, D']
    qf[..., :d] = q * scale
    qf[..., d] = 1.0
    kf = k.new_zeros(b, h, lk, dp)  # [B, H, Lk, D']
    kf[..., :d] = k
    kf[..., d] = bias.clamp(min=FOLD_MASK_VALUE).to(k.dtype)[:, None, :]  # [B|1, 1, Lk] -> [B, H, Lk]
    vf = v.new_zeros(b, h, lk, dp)  # [B, H, Lk, D']
    vf[..., :d] = v
    return qf, kf, vf
