"""Timed UNet calls for bench/gpu_suite.py: one speed row per (model, processors, backend, control), and
FreeCustom's time and peak memory per number of references.

A timed block is a short denoising loop: `calls` UNet calls on fixed inputs, the studio's step state updated
before each one as the pipelines do (processors installed once per block), timesteps given as 0-d device
tensors like a scheduler's (a Python int would make dynamo specialise on its value). The device is
synchronised before and after a block, never inside it. Eager and compiled blocks alternate (the order flips
every repeat) so that drift hits both alike; figures are medians. The compiled arm is `unet.compile()` (what
`--compile` does) after `torch._dynamo.reset()`, so each row counts its own graphs and breaks: `graphs` is the
number of frames dynamo compiled by the end of the warm-up -> by the end of the timed repeats (growth means a
recompile while timing; eager FlexAttention's own compiles count too).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch._dynamo
from diffusers.models.attention_processor import AttnProcessor2_0
from torch import nn
from torch._dynamo.utils import counters

from attention_processors import BatchLayout, Control, attention_control
from bench.gpu_checks import relative_error
from bench.gpu_controls import control_case, mrsa_case
from bench.gpu_report import Budget, Row, describe, skip_row
from bench.shaped_unets import call_inputs
from kernels.registry import unavailable_reason


@dataclass(frozen=True)
class Timing:
    calls: int  # UNet calls per timed block
    repeats: int  # timed blocks per mode
    compile_backend: str | None  # "inductor", "eager" (dynamo only: the CPU dry run), None: no compiled arm
    compile_mode: str = "default"  # inductor's mode: default, reduce-overhead, max-autotune-no-cudagraphs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak allocated since the last reset, weights and inputs included (None off CUDA)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def make_block(
    unet: nn.Module,
    inputs: dict,
    layout: BatchLayout | None,
    controls: Callable[[], list[Control]],
    backend: str,
    latent: int,
    calls: int,
    mark_steps: bool = False,
) -> Callable[[], torch.Tensor]:
    """A `calls`-step loop through stock processors (layout None) or the studio's; returns the last output.

    `mark_steps`: tell CUDA-graph trees (`reduce-overhead`) that each call starts a new step.
    """
    device = inputs["sample"].device
    steps = torch.linspace(981, 1, calls).long().tolist()
    timesteps = [torch.tensor(t, device=device) for t in steps]  # 0-d, like scheduler.timesteps[i]

    def call(t: torch.Tensor) -> torch.Tensor:
        if mark_steps:
            torch.compiler.cudagraph_mark_step_begin()
        return unet(**inputs, timestep=t, return_dict=False)[0]

    def stock() -> torch.Tensor:
        for t in timesteps:
            out = call(t)
        return out

    def studio() -> torch.Tensor:
        with attention_control(unet, controls(), backend=backend) as state:
            for i, (step, t) in enumerate(zip(steps, timesteps, strict=True)):
                state.update(index=i, total=calls, timestep=step, layout=layout, latent_size=(latent, latent))
                out = call(t)
        return out

    return stock if layout is None else studio


def timed(block: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, float | None, torch.Tensor]:
    """(seconds, peak GiB during the block, last output)."""
    sync(device)
    reset_peak(device)
    start = time.perf_counter()
    out = block()
    sync(device)
    return time.perf_counter() - start, peak_gib(device), out


@dataclass
class CompileCost:
    """Seconds a compiled arm's first block is expected to take, per model: a prior until one is measured, then the
    longest measured (the cold first compile; later arms reuse inductor's cached kernels but may add their own).
    Backends other than SDPA bring kernels of their own to compile (FlexAttention's templates, our Triton kernel):
    half as much again."""

    prior_s: dict[str, float]
    measured_s: dict[str, float] = field(default_factory=dict)

    def estimate(self, model: str, backend: str = "sdpa") -> float:
        base = self.measured_s.get(model, self.prior_s.get(model, max(self.prior_s.values(), default=120.0)))
        return base * (1.0 if backend == "sdpa" else 1.5)

    def record(self, model: str, seconds: float) -> None:
        self.measured_s[model] = max(seconds, self.measured_s.get(model, 0.0))


@torch.no_grad()
def speed_row(
    model: str,
    unet: nn.Module,
    latent: int,
    processors: str,
    backend: str,
    control: str,
    timing: Timing,
    budget: Budget,
    cost: CompileCost,
    compile_ok: bool = True,
) -> Row:
    """Eager and compiled UNet calls/s of one arm. `processors`: "stock" (diffusers' `AttnProcessor2_0`, SDPA)
    or "studio" (our processors, attention `backend` forced). `compile_ok` False: eager only (e.g. --quick)."""
    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    layout, controls = control_case(control, latent)
    stock = processors == "stock"
    label = "sdpa (AttnProcessor2_0)" if stock else backend
    mode = timing.compile_mode if timing.compile_backend == "inductor" else "default"
    arm_label = processors if mode == "default" or timing.compile_backend is None else f"{processors}, {mode}"
    cells = {"model": model, "processors": arm_label, "backend": label, "control": control, "batch": layout.size}
    reason = None if stock else unavailable_reason(backend, device)
    if reason is not None:
        return skip_row("speed", cells, f"not installed/unavailable: {reason}")
    unet._compiled_call_impl = None
    unet.set_attn_processor(AttnProcessor2_0())
    inputs = call_inputs(unet, layout.size, latent, device, dtype)
    mark = mode == "reduce-overhead"
    block = make_block(unet, inputs, None if stock else layout, controls, backend, latent, timing.calls, mark)
    notes: list[str] = []
    first_eager, _, eager_out = timed(block, device)  # warm-up: cuDNN/cuBLAS plans, flex/triton JIT
    eager_out = eager_out.clone()
    compiled: dict[str, object] = {}
    compiled_fn = None
    if timing.compile_backend is None or not compile_ok:
        notes.append("compiled: skipped (eager only in this run: --no-compile, or --quick)")
    elif not budget.allows(cost.estimate(model, backend)):
        notes.append(f"compiled: skipped, {budget.reason('its compile', cost.estimate(model, backend))}")
    else:
        torch._dynamo.reset()
        counters.clear()
        try:
            unet.compile(backend=timing.compile_backend, **({} if mode == "default" else {"mode": mode}))
            first, _, compiled_out = timed(block, device)  # compiles; CUDA-graph trees record on later calls
            compiled_out = compiled_out.clone()
            cost.record(model, first)
            if mark:
                timed(block, device)
            compiled_fn = unet._compiled_call_impl
            unet._compiled_call_impl = None
            timed(block, device)  # eager again: the reset dropped eager FlexAttention's compiled kernels
            compiled["first compiled block s"] = first
            compiled["graphs"] = counters["stats"]["unique_graphs"]
            compiled["compiled vs eager rel err"] = relative_error(compiled_out, eager_out)
        except Exception as exc:  # noqa: BLE001 - a backend dynamo/inductor cannot handle: report, keep eager figures
            notes.append(f"compiled: failed ({describe(exc)})")
            compiled_fn = None
            torch._dynamo.reset()
        unet._compiled_call_impl = None
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    peaks: dict[str, list[float]] = {"eager": [], "compiled": []}
    modes = ["eager"] + (["compiled"] if compiled_fn is not None else [])
    for r in range(timing.repeats):
        for m in modes if r % 2 == 0 else modes[::-1]:
            unet._compiled_call_impl = compiled_fn if m == "compiled" else None
            seconds, peak, _ = timed(block, device)
            times[m].append(seconds)
            if peak is not None:
                peaks[m].append(peak)
    unet._compiled_call_impl = None
    rates = {m: timing.calls / statistics.median(times[m]) for m in modes}
    cells["eager calls/s"] = rates["eager"]
    cells["compiled calls/s"] = rates.get("compiled")
    cells["compiled/eager"] = rates["compiled"] / rates["eager"] if "compiled" in rates else None
    cells["eager peak GiB"] = max(peaks["eager"]) if peaks["eager"] else None
    cells["compiled peak GiB"] = max(peaks["compiled"]) if peaks["compiled"] else None
    cells["first eager block s"] = first_eager
    cells["first compiled block s"] = compiled.get("first compiled block s")
    if compiled_fn is not None:
        cells["graphs"] = f"{compiled['graphs']}->{counters['stats']['unique_graphs']}"
        cells["breaks"] = sum(counters["graph_break"].values())
        cells["compiled vs eager rel err"] = compiled["compiled vs eager rel err"]
    else:
        cells |= {"graphs": None, "breaks": None, "compiled vs eager rel err": None}
    torch._dynamo.reset()
    return Row("speed", cells, "ok" if not notes else "; ".join(notes))


@torch.no_grad()
def freecustom_rows(
    model: str, unet: nn.Module, latent: int, refs: tuple[int, ...], timing: Timing, backend: str = "auto"
) -> list[Row]:
    """Eager time per UNet call and peak memory with R references (R = 0: the studio with no control, batch 2).

    The Rs are timed round-robin, each block with the peak-memory counter reset first.
    """
    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    unet._compiled_call_impl = None
    unet.set_attn_processor(AttnProcessor2_0())
    blocks = {}
    for r in (0, *refs):
        layout, controls = control_case("none", latent) if r == 0 else mrsa_case(r, latent)
        inputs = call_inputs(unet, layout.size, latent, device, dtype)
        blocks[r] = (layout.size, make_block(unet, inputs, layout, controls, backend, latent, timing.calls))
    for _, block in blocks.values():
        timed(block, device)  # warm-up
    times: dict[int, list[float]] = {r: [] for r in blocks}
    peaks: dict[int, list[float]] = {r: [] for r in blocks}
    for i in range(timing.repeats):
        order = list(blocks) if i % 2 == 0 else list(blocks)[::-1]
        for r in order:
            seconds, peak, _ = timed(blocks[r][1], device)
            times[r].append(seconds)
            if peak is not None:
                peaks[r].append(peak)
    plain = statistics.median(times[0])
    rows = []
    for r, (batch, _) in blocks.items():
        per_call = statistics.median(times[r]) / timing.calls
        cells = {"model": model, "R": r, "batch": batch, "ms per UNet call": per_call * 1e3}
        cells["time / R=0"] = statistics.median(times[r]) / plain
        if peaks[r]:
            cells["peak GiB"] = max(peaks[r])
            cells["peak - R=0 peak GiB"] = max(peaks[r]) - max(peaks[0])
        rows.append(Row("freecustom", cells))
    return rows
