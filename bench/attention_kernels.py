"""Time every available attention backend for each bias form, side by side, in one run.

    .venv/bin/python bench/attention_kernels.py                 # SD-ish shapes for this device
    .venv/bin/python bench/attention_kernels.py --shape 2 8 4096 40 --repeats 20

Times are per call, and relative to ``sdpa`` without a bias measured in the same run. Bias forms:

* ``per_key``: FreeCustom-like, ``[B, Lk]`` weights with half of the keys ``-inf``;
* ``full``: a ``[B, 1, Lq, Lk]`` bias with some ``-inf`` entries (head-broadcast, like a regional mask).

The rows ``sdpa[drop+fold]`` etc. force each per-key plan of the SDPA backend
(``kernels.sdpa_backend.per_key_plan``) so the choice can be checked on new hardware. On CUDA the
peak extra memory of each call is printed too. triton runs on CUDA only here (the CPU interpreter is
far too slow for these shapes). Not a test.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels import available_backends, select_backend  # noqa: E402
from kernels.bias import check_inputs  # noqa: E402
from kernels.registry import implementation  # noqa: E402
from kernels.sdpa_backend import _sdpa_per_key  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rows(
    fns: list[Callable[[], torch.Tensor]], device: torch.device, repeats: int, budget_s: float
) -> list[list[float]]:
    """Seconds per call for each fn, measured round-robin so load changes hit every row alike.

    Every fn is called once first (warm-up; this also compiles flex on CUDA). Then rounds of one call
    per fn run until ``repeats`` rounds or ``budget_s`` seconds have passed (at least 2 rounds).
    """
    for fn in fns:
        fn()
    _sync(device)
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    for r in range(repeats):
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[i].append(time.perf_counter() - t0)
    return times


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def peak_extra_mib(fn: Callable[[], torch.Tensor], device: torch.device) -> float | None:
    """Peak CUDA memory allocated during one call, above what was allocated before it."""
    if device.type != "cuda":
        return None
    _sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def make_inputs(b: int, h: int, lq: int, lk: int, d: int, device: torch.device, dtype: torch.dtype):
    gen = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, generator=gen).to(device, dtype) for n in (lq, lk, lk))
    per_key = torch.rand(b, lk, generator=gen) * 2.0  # [B, Lk] weights
    per_key[:, torch.randperm(lk, generator=gen)[: lk // 2]] = float("-inf")  # half the keys masked
    full = torch.randn(b, 1, lq, lk, generator=gen)  # [B, 1, Lq, Lk]
    full[full > 2.0] = float("-inf")  # ~2 % masked entries
    return q, k, v, {"none": None, "per_key": per_key.to(device), "full": full.to(device)}


def make_rows(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, biases: dict[str, torch.Tensor | None], names: list[str]
) -> list[tuple[str, str, Callable[[], torch.Tensor]]]:
    """``(label, bias form, zero-argument call)`` for every backend and form, plus each SDPA per-key plan."""
    rows: list[tuple[str, str, Callable[[], torch.Tensor]]] = []
    for form_name, raw in biases.items():
        form, bias = check_inputs(q, k, v, raw)
        for name in names:
            rows.append((name, form_name, functools.partial(implementation(name), q, k, v, bias, form)))
        if form == "per_key" and "sdpa" in names:
            for drop in (False, True):
                for plan in ("mask", "fold"):
                    label = f"sdpa[{'drop+' if drop else ''}{plan}]"
                    rows.append((label, form_name, functools.partial(_sdpa_per_key, q, k, v, bias, drop, plan)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", nargs=4, type=int, metavar=("B", "H", "L", "D"), help="Lq = Lk = L")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timing per shape (at least 2 rounds)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    parser.add_argument("--skip", nargs="*", default=[], help="backends to leave out (e.g. einsum flex)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 is steadier on a shared machine)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.float16 if device.type == "cuda" else torch.float32)
    shapes = (
        [tuple(args.shape)]
        if args.shape
        else ([(2, 8, 4096, 40), (2, 10, 4096, 64), (2, 8, 1024, 80)] if device.type == "cuda" else [(2, 8, 1024, 40)])
    )
    avail = available_backends(device)
    names = [n for n, why in avail.items() if why is None and n not in args.skip]
    print(f"torch {torch.__version__}, device {device}, dtype {dtype}, threads {torch.get_num_threads()}")
    for n, why in avail.items():
        print(f"  {n:9s} {'available' if why is None else 'unavailable: ' + why}")
    warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")

    for b, h, length, d in shapes:
        q, k, v, biases = make_inputs(b, h, length, length, d, device, dtype)
        auto = ", ".join(f"{f}->{select_backend(f, device, dtype)}" for f in biases)
        print(f"\nB={b} H={h} L={length} D={d}  (auto: {auto})")
        print(f"{'backend':18s} {'bias':8s} {'ms/call':>9s} {'x sdpa-none':>12s} {'n':>3s} {'peak MiB':>9s}")
        ok: list[tuple[str, str, Callable[[], torch.Tensor]]] = []
        for label, form_name, fn in make_rows(q, k, v, biases, names):
            try:  # a backend that rejects a shape/dtype here: report it, go on
                fn()
                ok.append((label, form_name, fn))
            except Exception as exc:
                print(f"{label:18s} {form_name:8s} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
        times = time_rows([fn for _, _, fn in ok], device, args.repeats, args.budget)
        baseline = _median(times[0]) if ok and ok[0][:2] == ("sdpa", "none") else None
        for (label, form_name, fn), ts in zip(ok, times, strict=True):
            sec = _median(ts)
            mem = peak_extra_mib(fn, device)
            rel = f"{sec / baseline:11.2f}x" if baseline else f"{'-':>12s}"
            mem_txt = "" if mem is None else f"{mem:9.1f}"
            print(f"{label:18s} {form_name:8s} {sec * 1e3:9.2f} {rel} {len(ts):3d} {mem_txt}")


if __name__ == "__main__":
    main()
