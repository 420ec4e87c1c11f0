"""Which backends exist, which can run here, and which one ``auto`` picks.

Availability is checked when asked (never at import: no CUDA probing, no triton/xformers import), and
the answers that cannot change during a process are cached with ``functools.lru_cache``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .bias import BiasForm
from .einsum_backend import einsum_attention
from .flex_backend import flex_attention_backend, flex_import_error
from .sdpa_backend import sdpa_attention
from .triton_backend import triton_attention, triton_unavailable_reason
from .xformers_backend import xformers_attention, xformers_import_error

logger = logging.getLogger("kernels")

BackendFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None", BiasForm], torch.Tensor]

# Fastest first is not implied: ``select_backend`` holds the policy. The einsum oracle is last.
BACKENDS: tuple[str, ...] = ("sdpa", "xformers", "flex", "triton", "einsum")
BIAS_FORMS: tuple[str, ...] = ("none", "per_key", "full")


def implementation(name: str) -> BackendFn:
    """The function that runs backend ``name`` (already validated and available)."""
    return {
        "sdpa": sdpa_attention,
        "xformers": xformers_attention,
        "flex": flex_attention_backend,
        "triton": triton_attention,
        "einsum": einsum_attention,
    }[name]


def _device_type(device: torch.device | str | None) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def unavailable_reason(name: str, device: torch.device | str | None = None) -> str | None:
    """Why backend ``name`` cannot run on ``device`` (default: CUDA if present, else CPU), or None."""
    device_type = _device_type(device)
    if name == "einsum":
        return None
    if name == "sdpa":
        return None if hasattr(F, "scaled_dot_product_attention") else "this torch has no SDPA"
    if name == "flex":
        return flex_import_error()
    if name == "triton":
        return triton_unavailable_reason(device_type)
    if name == "xformers":
        if importlib.util.find_spec("xformers") is None:
            return "xformers is not installed (pip install '.[xformers]', CUDA machines only)"
        if device_type != "cuda":
            return f"xformers runs only on CUDA tensors, not {device_type}"
        if not torch.cuda.is_available():
            return "no CUDA device"
        return xformers_import_error()
    raise ValueError(f"unknown attention backend {name!r}; known: {', '.join(('auto',) + BACKENDS)}")


def available_backends(device: torch.device | str | None = None) -> dict[str, str | None]:
    """``{backend: None if usable else why not}`` for tensors on ``device``.

    ``device`` defaults to CUDA when present, else CPU: what ``studio doctor`` reports.
    """
    return {name: unavailable_reason(name, device) for name in BACKENDS}


def select_backend(form: str, device: torch.device | str, dtype: torch.dtype) -> str:
    """The backend ``auto`` uses for a bias ``form`` on ``device`` with ``dtype``.

    Policy (measured on this project's 2-core CPU machines; GPU choices from the kernels' published figures):

    * CPU: ``sdpa`` for every form. Measured on 2 cores at B=2, H=8, L=1024: SDPA with a float mask
      42-49 ms vs FlexAttention 480 ms eager / 140 ms compiled; xformers and triton do not run on CPU.
    * CUDA, no bias or full bias: ``sdpa``. It dispatches to flash (no bias) or memory-efficient/cuDNN
      (bias), which are at or above every alternative we have (FA2/cuDNN >= Triton-tutorial kernels;
      xformers is within a few percent either way in diffusers benchmarks; FlexAttention reaches
      ~60-90 % of flash when dense).
    * CUDA, per-key bias: ``sdpa`` as well, because our SDPA path does not pass the per-key bias as a
      mask when it can avoid it: it drops the -inf keys (less work) and folds the finite weights into
      a spare head-dim channel, so the call runs on the no-mask flash/cuDNN kernel (see
      ``kernels.sdpa_backend.per_key_plan``). Our Triton kernel reads the per-key bias almost for free
      but is a tutorial-class kernel (below cuDNN/FA3 on H100), and xformers' tensor bias is, per its
      maintainers, slower than its structured biases. This is a judgement from published numbers,
      not a GPU measurement; bench/attention_kernels.py prints the comparison on a CUDA machine.

    The result is logged once per (form, device type, dtype) at DEBUG on the ``kernels`` logger, outside
    ``torch.compile`` only: the policy itself is a pure function of its arguments (no cache, no logging,
    no global read), so dynamo folds it to a constant and a compiled UNet has no graph break here.
    """
    if form not in BIAS_FORMS:
        raise ValueError(f"unknown bias form {form!r}; expected one of {', '.join(BIAS_FORMS)}")
    device_type = _device_type(device)
    choice = _select(form, device_type, dtype)
    if not torch.compiler.is_compiling():
        _announce(choice, form, device_type, dtype)
    return choice


def _select(form: str, device_type: str, dtype: torch.dtype) -> str:
    """Pure policy (see ``select_backend``): the same answer for every form, device and dtype today."""
    return "sdpa"


@functools.cache
def _announce(choice: str, form: str, device_type: str, dtype: torch.dtype) -> None:
    """The DEBUG line, once per combination (eager only; never reached while dynamo traces)."""
    logger.debug("attention backend auto -> %s (bias form %s, %s, %s)", choice, form, device_type, dtype)
