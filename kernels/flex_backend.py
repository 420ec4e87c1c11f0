"""FlexAttention backend (``torch.nn.attention.flex_attention``).

The bias enters through a ``score_mod`` that indexes the captured bias tensor, so a per-key bias is
read as ``bias[b, kv_idx]``: one value per key, never an ``Lq x Lk`` tensor. On CUDA the function is
compiled once, on first use (compiling at import would cost tens of seconds for every importer); on
CPU it runs eagerly, which is slow (measured on a 2-core CPU: about 480 ms at B=2, H=8, L=1024) but exact, and is
what the tests use. (Compiling on CPU is also not an option with torch 2.13: the first shape compiles
in tens of seconds, and a second shape, compiled with dynamic sizes, failed with an inductor C++ error,
``cur_qSplitSize8 was not declared``.)

Checked on CPU with the compiled function: calling it again with a fresh ``score_mod`` closure over a
new bias tensor of the same shape does not recompile; a new sequence length compiles once more.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import torch

from .bias import BiasForm, zero_dead_rows

_FLEX_MODULE = "torch.nn.attention.flex_attention"


@functools.lru_cache(maxsize=1)
def flex_import_error() -> str | None:
    """Why FlexAttention is unusable with this torch, or None."""
    try:
        mod = importlib.import_module(_FLEX_MODULE)
    except Exception as exc:
        return f"this torch ({torch.__version__}) has no FlexAttention ({type(exc).__name__}: {exc})"
    if not hasattr(mod, "flex_attention"):
        return f"this torch ({torch.__version__}) has no flex_attention"
    return None


@functools.lru_cache(maxsize=1)
def _compiled_flex() -> Callable[..., torch.Tensor]:
    """``torch.compile(flex_attention)``, built on the first CUDA call and reused after.

    Default (automatic) dynamic shapes rather than ``dynamic=False``: a UNet calls attention at
    several sequence lengths (each resolution level, cross-attention's 77 keys) and bias forms, and
    fully static shapes would hit dynamo's recompile limit and silently fall back to eager.
    """
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


def _score_mod(bias: torch.Tensor | None, form: BiasForm) -> Callable | None:
    """A score_mod adding the bias; broadcast (size-1) dims are indexed at 0 so no expand is needed."""
    if bias is None:
        return None
    if form == "per_key":
        if bias.shape[0] == 1:
            row = bias[0]  # [Lk]

            def per_key_shared(score, b, h, q_idx, kv_idx):
                return score + row[kv_idx]

            return per_key_shared

        def per_key(score, b, h, q_idx, kv_idx):
            return score + bias[b, kv_idx]

        return per_key

    # Full bias: a broadcast (size-1) dim is indexed at 0, so the captured tensor is never expanded.
    nb, nh, nq, nk = bias.shape

    def full(score, b, h, q_idx, kv_idx):
        bi = b if nb > 1 else 0
        hi = h if nh > 1 else 0
        qi = q_idx if nq > 1 else 0
        ki = kv_idx if nk > 1 else 0
        return score + bias[bi, hi, qi, ki]

    return full


def flex_attention_backend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, form: BiasForm
) -> torch.Tensor:
    """Attention through FlexAttention; rows whose keys are all -inf give zeros."""
    from torch.nn.attention.flex_attention import flex_attention

    fn = _compiled_flex() if q.device.type == "cuda" else flex_attention
    # The bias is read inside the kernel in fp32 (the score's dtype), whatever q's dtype.
    b = bias.float() if bias is not None and bias.dtype != torch.float32 else bias
    out = fn(q, k, v, score_mod=_score_mod(b, form))  # [B, H, Lq, D]
    return zero_dead_rows(out, bias, form)
