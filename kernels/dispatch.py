"""The one public entry point: :func:`attention`."""

from __future__ import annotations

import torch

from .bias import check_inputs
from .registry import BACKENDS, available_backends, implementation, select_backend, unavailable_reason


@torch.compiler.assume_constant_result
def _unavailable_reason(name: str, device_type: str) -> str | None:
    """`unavailable_reason`, read by dynamo as a constant: it imports modules, which dynamo cannot trace, and
    its answer cannot change within a process (measured: without this, a compiled tiny SD1.5 UNet with
    ``backend="flex"`` broke its graph at all 34 attention calls)."""
    return unavailable_reason(name, device_type)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """``softmax(q kᵀ / sqrt(D) + bias) v`` with the bias added to the logits before the softmax.

    Args:
        q: ``[B, H, Lq, D]`` (SDPA's layout).
        k, v: ``[B, H, Lk, D]``, same dtype and device as q.
        bias: additive logits bias, ``-inf`` allowed (masked):

            * ``None``;
            * per-key ``[B, Lk]`` or ``[1, Lk]``: one value per key, shared by all heads and queries
              (FreeCustom's weighted mask). sdpa, xformers, triton and compiled flex never build an
              ``Lq x Lk`` tensor from it (einsum and eager flex materialise the scores anyway);
              a 4-D ``[B|1, 1, 1, Lk]`` bias is treated the same way;
            * full: 4-D, broadcastable to ``[B, H, Lq, Lk]``.
        backend: ``"auto"`` (fastest for the bias form on this device, see
            :func:`kernels.select_backend`), or one of ``sdpa``, ``xformers``, ``flex``, ``triton``,
            ``einsum`` (the float32 reference).

    Returns:
        ``[B, H, Lq, D]`` in q's dtype. A query row whose keys are *all* ``-inf`` is defined as
        **zeros** in every backend: softmax is 0/0 there and kernels otherwise disagree (NaN, zeros,
        garbage), and a silent NaN would poison a whole image. Callers that always keep some key per
        row (MRSA keeps the target's own keys) never hit it.

    Raises:
        ValueError: bad shapes/dtypes/devices (message names expected and given shapes), an unknown
            backend, or one that cannot run here (message says why and lists the available ones).
    """
    form, bias = check_inputs(q, k, v, bias)
    if backend == "auto":
        name = select_backend(form, q.device, q.dtype)
    elif backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of: {', '.join(('auto',) + BACKENDS)}")
    else:
        name = backend
        reason = _unavailable_reason(name, q.device.type)
        if reason is not None:
            usable = [n for n, why in available_backends(q.device).items() if why is None]
            raise ValueError(
                f"attention backend {name!r} is not available for {q.device.type} tensors: {reason}; "
                f"available here: {', '.join(['auto'] + usable)}"
            )
    return implementation(name)(q, k, v, bias, form)
