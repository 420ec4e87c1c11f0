"""Attention kernels with an additive bias: one function, several interchangeable backends.

``attention(q, k, v, bias=None, backend="auto")`` computes ``softmax(q kᵀ / sqrt(D) + bias) v`` on
``[B, H, L, D]`` tensors. The bias may be absent, per-key (``[B, Lk]``, FreeCustom's weighted mask,
never expanded to ``Lq x Lk`` on the fast paths) or full (4-D). Backends: ``sdpa`` (PyTorch SDPA),
``xformers`` (CUDA), ``flex`` (FlexAttention), ``triton`` (our kernel; CUDA, or CPU under
``TRITON_INTERPRET=1``), and ``einsum``, the float32 oracle the others are tested against. ``auto``
picks per bias form, device and dtype (:func:`select_backend`); ``available_backends()`` says what
runs here and why not.

Rows whose keys are all ``-inf`` come out as zeros in every backend (see :func:`attention`).

Not to be confused with the Hugging Face hub's ``kernels`` package, which this project does not use.
Importing this package imports only torch: no CUDA probing, no triton/xformers import.
"""

from .bias import BiasForm, bias_form
from .dispatch import attention
from .registry import BACKENDS, available_backends, select_backend

__all__ = ["BACKENDS", "BiasForm", "attention", "available_backends", "bias_form", "select_backend"]
