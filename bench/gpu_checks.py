"""Correctness on the device: every attention backend against the einsum oracle, per call and per UNet call.

The tests check the backends on CPU at tiny shapes; the kernels that matter (flash/cuDNN SDPA, compiled
FlexAttention, our Triton kernel, xformers) only run on a GPU, at head dims and lengths the tests never
reach. Per call, the oracle is `kernels`' einsum backend run in float32 on the same (rounded) inputs, so the
reference is exact for them whatever the suite's dtype. Per UNet call, it is the same UNet through the
studio's processors with the einsum backend; diffusers' stock `AttnProcessor2_0` gets a row too (an
independent implementation: its distance from the oracle is the dtype's noise floor).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from torch import nn

from attention_processors import BatchLayout, Control, attention_control
from bench.gpu_controls import control_case
from bench.gpu_report import Row, failed_row, skip_row
from bench.shaped_unets import call_inputs
from kernels import attention
from kernels.registry import unavailable_reason

NEG_INF = float("-inf")


@dataclass(frozen=True)
class KernelCase:
    name: str
    shape: tuple[int, int, int, int, int]  # B, H, Lq, Lk, D
    forms: tuple[str, ...]  # bias forms checked at this shape: none, per_key, full


def make_bias(form: str, b: int, lq: int, lk: int, g: torch.Generator) -> torch.Tensor | None:
    """`per_key`: FreeCustom-like [B, Lk], the first third of the keys (own) 0, the rest weight 3 on a random half
    and -inf elsewhere; `full`: a head-broadcast [B, 1, Lq, Lk] bias with ~5 % -inf. Every row keeps key 0."""
    if form == "none":
        return None
    if form == "per_key":
        bias = torch.zeros(b, lk)  # [B, Lk]
        refs = torch.arange(lk) >= lk // 3
        masked = torch.rand(b, lk, generator=g) < 0.5
        bias[:, refs] = 3.0
        bias[masked & refs] = NEG_INF
        return bias
    if form == "full":
        bias = torch.randn(b, 1, lq, lk, generator=g)  # [B, 1, Lq, Lk]
        bias[torch.rand(b, 1, lq, lk, generator=g) < 0.05] = NEG_INF
        bias[..., 0] = 0.0
        return bias
    raise ValueError(f"unknown bias form {form!r}")


def kernel_rows(
    cases: Sequence[KernelCase],
    backends: Sequence[str],
    device: torch.device,
    dtype: torch.dtype,
    tol: float,
    on_row: Callable[[Row], None] = lambda row: None,
    on_start: Callable[[str, str, str], None] = lambda case, form, backend: None,
) -> list[Row]:
    """One row per (case, bias form, backend): max |backend - oracle| against `tol`, or why it was skipped.

    `on_start` is told (case, form, backend) before each call, `on_row` each row as it is made, so a caller
    running this in a child process can tell which call a crash happened in.
    """
    rows = []
    for case in cases:
        b, h, lq, lk, d = case.shape
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(b, h, n, d, generator=g).to(device, dtype) for n in (lq, lk, lk))  # [B, H, L, D]
        for form in case.forms:
            raw = make_bias(form, b, lq, lk, g)
            bias = None if raw is None else raw.to(device)
            ref = attention(q.float(), k.float(), v.float(), bias, backend="einsum")  # [B, H, Lq, D] float32
            for name in backends:
                cells = {"case": case.name, "B×H×Lq×Lk×D": "×".join(map(str, case.shape)), "bias": form}
                cells["backend"] = name
                reason = unavailable_reason(name, device)
                if reason is not None:
                    row = skip_row("kernels", cells, f"not installed/unavailable: {reason}")
                else:
                    on_start(case.name, form, name)
                    try:
                        out = attention(q, k, v, bias, backend=name)  # [B, H, Lq, D]
                        diff = (out.float() - ref).abs().max().item()
                        finite = bool(torch.isfinite(out).all())
                        cells |= {"max abs diff": diff, "tol": tol}
                        status = "ok" if finite and diff <= tol else ("FAIL: not finite" if not finite else "FAIL")
                        row = Row("kernels", cells, status)
                    except Exception as exc:  # noqa: BLE001 - a backend that rejects a shape or dtype: say so, go on
                        row = failed_row("kernels", cells, exc)
                rows.append(row)
                on_row(row)
            del ref
    return rows


@torch.no_grad()
def studio_call(
    unet: nn.Module, inputs: dict, controls: Sequence[Control], layout: BatchLayout, latent: int, backend: str
) -> torch.Tensor:
    """One UNet call through the studio's processors with attention `backend` forced."""
    with attention_control(unet, controls, backend=backend) as state:
        state.update(index=0, total=1, timestep=500, layout=layout, latent_size=(latent, latent))
        return unet(**inputs, return_dict=False)[0]


@torch.no_grad()
def stock_call(unet: nn.Module, inputs: dict) -> torch.Tensor:
    """One UNet call through diffusers' stock `AttnProcessor2_0`."""
    unet.set_attn_processor(AttnProcessor2_0())
    return unet(**inputs, return_dict=False)[0]


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out - ref‖₂ / ‖ref‖₂ in float64: one figure for a whole UNet output, insensitive to a single outlier."""
    ref64 = ref.double()
    return ((out.double() - ref64).norm() / ref64.norm().clamp_min(1e-30)).item()


def unet_oracle_rows(
    model: str,
    unet: nn.Module,
    latent: int,
    backends: Sequence[str],
    tol: float,
    cases: Sequence[str] = ("none", "MRSA R=2"),
    skip: dict[str, str] | None = None,
) -> list[Row]:
    """Per control case: the einsum-backend UNet output, then one row per backend (and stock, for `none`).

    `skip` maps a backend to a reason not to run it (e.g. its per-call check crashed the device).
    """
    skip = skip or {}
    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    rows = []
    for case in cases:
        layout, controls = control_case(case, latent)
        inputs = call_inputs(unet, layout.size, latent, device, dtype) | {"timestep": torch.tensor(500, device=device)}
        try:
            ref = studio_call(unet, inputs, controls(), layout, latent, "einsum")  # [B, 4, h, w]
        except Exception as exc:  # noqa: BLE001 - no oracle for this case (e.g. out of memory): say so, go on
            rows.append(failed_row("unet oracle", {"model": model, "control": case, "backend": "einsum"}, exc))
            continue
        for name in (["stock"] if case == "none" else []) + list(backends):
            cells = {"model": model, "control": case, "batch": layout.size, "backend": name}
            reason = None if name == "stock" else unavailable_reason(name, device)
            if reason is not None:
                rows.append(skip_row("unet oracle", cells, f"not installed/unavailable: {reason}"))
                continue
            if name in skip:
                rows.append(skip_row("unet oracle", cells, skip[name]))
                continue
            try:
                out = (
                    stock_call(unet, inputs)
                    if name == "stock"
                    else studio_call(unet, inputs, controls(), layout, latent, name)
                )
                err = relative_error(out, ref)
                finite = bool(torch.isfinite(out).all())
                cells |= {"rel L2 error": err, "max abs diff": (out.float() - ref.float()).abs().max().item()}
                cells["tol"] = tol
                status = "ok" if finite and err <= tol else ("FAIL: not finite" if not finite else "FAIL")
                rows.append(Row("unet oracle", cells, status))
            except Exception as exc:  # noqa: BLE001 - a backend that fails here: say so, go on
                rows.append(failed_row("unet oracle", cells, exc))
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        del ref
    return rows
