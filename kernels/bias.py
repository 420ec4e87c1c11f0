"""Bias forms: classify, validate, canonicalise, and the all-masked-row rule.

Every backend receives its inputs through :func:`check_inputs`, so shape errors are reported once, in
one wording, before any kernel runs. The all-masked-row rule lives here too, so that every backend
(the einsum oracle included) defines those rows the same way: as zeros.
"""

from __future__ import annotations

from typing import Literal

import torch

BiasForm = Literal["none", "per_key", "full"]


def bias_form(bias: torch.Tensor | None) -> BiasForm:
    """Classify an additive attention bias by its rank.

    * ``None`` -> ``"none"``.
    * 2-D ``[B, Lk]`` or ``[1, Lk]`` -> ``"per_key"``: one value per key, shared by every head and
      query (FreeCustom's weighted mask). Fast paths never expand it to ``Lq x Lk``.
    * 4-D, broadcastable to ``[B, H, Lq, Lk]`` -> ``"full"``.

    Only the rank is looked at; :func:`check_inputs` validates the sizes against q, k and v.
    """
    if bias is None:
        return "none"
    if not isinstance(bias, torch.Tensor):
        raise ValueError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
    if bias.ndim == 2:
        return "per_key"
    if bias.ndim == 4:
        return "full"
    raise ValueError(
        f"bias must be 2-D [B, Lk] (per-key) or 4-D broadcastable to [B, H, Lq, Lk] (full); "
        f"got a {bias.ndim}-D tensor of shape {tuple(bias.shape)}"
    )


def check_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
) -> tuple[BiasForm, torch.Tensor | None]:
    """Validate q/k/v/bias and return ``(form, bias)`` in canonical form.

    Canonical means: a 4-D bias whose head and query dims are both 1 (``[B|1, 1, 1, Lk]``, the layout
    diffusers uses for key masks) is turned into the per-key view ``[B|1, Lk]``, so it gets the
    per-key fast paths. No data is copied.

    Raises ValueError naming the expected and the given shapes.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"{name} must be 4-D [B, H, L, D]; got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    b, h, lq, d = q.shape
    lk = k.shape[2]
    want_kv = (b, h, lk, d)
    if tuple(k.shape) != want_kv or tuple(v.shape) != want_kv:
        raise ValueError(
            f"k and v must both be [B, H, Lk, D] = {want_kv} to match q {tuple(q.shape)}; "
            f"got k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share a dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k, v must share a device; got {q.device}, {k.device}, {v.device}")

    form = bias_form(bias)
    if bias is None:
        return form, None
    if not bias.is_floating_point():
        raise ValueError(
            f"bias must be an additive floating-point tensor, got {bias.dtype}; "
            "turn a boolean keep-mask into one with torch.where(mask, 0.0, float('-inf'))"
        )
    if bias.device != q.device:
        raise ValueError(f"bias is on {bias.device} but q is on {q.device}")
    if form == "per_key":
        if bias.shape[0] not in (1, b) or bias.shape[1] != lk:
            raise ValueError(f"per-key bias must be [B, Lk] = [{b}, {lk}] or [1, {lk}]; got {tuple(bias.shape)}")
        return form, bias
    want = (b, h, lq, lk)
    if any(got not in (1, full) for got, full in zip(bias.shape, want, strict=True)):
        raise ValueError(
            f"full bias must be broadcastable to [B, H, Lq, Lk] = {list(want)} "
            f"(each dim equal or 1); got {tuple(bias.shape)}"
        )
    if bias.shape[1] == 1 and bias.shape[2] == 1 and bias.shape[3] == lk:
        return "per_key", bias[:, 0, 0, :]  # [B|1, Lk] view
    return form, bias


def as_4d(bias: torch.Tensor | None, form: BiasForm) -> torch.Tensor | None:
    """The bias as a 4-D tensor that broadcasts against ``[B, H, Lq, Lk]`` (a view, never a copy)."""
    if bias is None:
        return None
    if form == "per_key":
        return bias[:, None, None, :]  # [B|1, 1, 1, Lk]
    return bias


def dead_rows(bias: torch.Tensor | None, form: BiasForm) -> torch.Tensor | None:
    """Boolean mask, broadcastable to the output ``[B, H, Lq, D]``, of query rows whose keys are all -inf.

    Softmax over a row of -inf is 0/0; kernels disagree on what they return for it (NaN, zeros, or
    garbage). We define the result as zeros and apply it after every backend. It is a reduction over
    the bias (no Lq x Lk temporary is created beyond the bias the caller already holds).
    """
    if bias is None:
        return None
    neg_inf = float("-inf")
    if form == "per_key":
        return (bias.amax(dim=-1) == neg_inf)[:, None, None, None]  # [B|1, 1, 1, 1]
    return bias.amax(dim=-1, keepdim=True) == neg_inf  # [B|1, H|1, Lq|1, 1]


def zero_dead_rows(out: torch.Tensor, bias: torch.Tensor | None, form: BiasForm) -> torch.Tensor:
    """Apply the all-masked-row rule: rows whose every key is -inf become exact zeros (not NaN)."""
    dead = dead_rows(bias, form)
    if dead is None:
        return out
    return out.masked_fill(dead, 0.0)  # [B, H, Lq, D]
