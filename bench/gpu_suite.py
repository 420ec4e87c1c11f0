"""The device checks of the studio in one command, for a machine with a CUDA GPU; prints markdown tables.

    python bench/gpu_suite.py --out gpu-results     # budgeted to end within 10 minutes on an H100/H200 (--budget)
    python bench/gpu_suite.py --quick               # at most 5: fewer repeats, SD1.5 stock and studio-SDPA compiled
    python bench/gpu_suite.py --dry-run             # CPU: every row at tiny shapes, fp32, dynamo without inductor

What it measures, in this order (most wanted first; a compile the time budget cannot fit becomes a row that
says so, and the run still prints every table):

1. each attention backend (SDPA, FlexAttention compiled, our Triton kernel, xformers) against the float32
   einsum oracle per call, at the shapes SD1.5 and SDXL make, for each bias form (in a child process, so that
   a kernel that crashes the device cannot end the suite);
2. UNet calls per second at batch 2 (one CFG step: it/s) of the SD1.5-shaped UNet at 512² (64² latent), then of
   the SDXL-shaped one at 1024² (128² latent, pooled text and time ids), eager and `unet.compile()`d, through
   diffusers' stock `AttnProcessor2_0` and through the studio's processors (SDPA);
3. FreeCustom with R = 1, 2, 3 references: time per UNet call and peak memory (`max_memory_allocated`);
4. each backend against the oracle for one UNet call through the studio's processors (no control, and
   FreeCustom's MRSA with two references), SD1.5 then SDXL;
5. the studio with the other backends, `reduce-overhead` (CUDA graphs) for SD1.5, and the control arms (MRSA,
   masked MasaCtrl): eager always, compiled as the budget allows.

Random weights, no network. Unavailable backends (xformers not installed, triton missing) get a row that says
why. `--out DIR` rewrites DIR/gpu_suite.md and DIR/gpu_suite.json after every job. Not a test.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_checks import kernel_rows, unet_oracle_rows
from bench.gpu_report import Budget, Row, failed_row, fmt, skip_row, tables, write
from bench.gpu_settings import DRY_RUN, DTYPES, FULL, KERNEL_TOL, QUICK, UNET_TOL, SuiteSettings
from bench.gpu_speed import CompileCost, Timing, freecustom_rows, speed_row
from kernels import available_backends, select_backend

GOAL_SD15_COMPILED_ITS = 110.0  # SD1.5 512², batch 2 (CFG), compiled, on an H100-class GPU


def build_unet(model: str, settings: SuiteSettings) -> torch.nn.Module:
    """The UNet for `model` ("SD1.5" or "SDXL") on the suite's device and dtype, built there directly."""
    device, dtype = torch.device(settings.device), settings.torch_dtype
    if settings.tiny:
        from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline

        unet = (tiny_sd15_pipeline if model == "SD1.5" else tiny_sdxl_pipeline)().unet
        return unet.to(device, dtype).eval()
    from bench.attention_overhead import sd15_shaped_unet
    from bench.shaped_unets import sdxl_shaped_unet

    with torch.device(device):
        unet = sd15_shaped_unet() if model == "SD1.5" else sdxl_shaped_unet()
    return unet.to(dtype).eval()


def model_name(model: str, settings: SuiteSettings) -> str:
    if settings.tiny:
        return f"tiny {model}"
    return f"{model}-shaped {settings.latent[model] * 8}²"


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def header(settings: SuiteSettings, argv: list[str]) -> str:
    device = torch.device(settings.device)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        where = (
            f"{p.name} ({p.multi_processor_count} SMs, {p.total_memory / 2**30:.1f} GiB), CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version()}, SDPA kernels enabled: flash "
            f"{torch.backends.cuda.flash_sdp_enabled()}, mem-efficient {torch.backends.cuda.mem_efficient_sdp_enabled()}, "
            f"cuDNN {torch.backends.cuda.cudnn_sdp_enabled()}"
        )
    else:
        where = "CPU dry run (tiny UNets; figures check the script, they are not GPU figures)"
    timing = "; ".join(
        f"{model}: {t.calls} calls per block, {t.repeats} interleaved blocks per mode"
        for model, t in settings.timing.items()
    )
    compile_what = settings.timing["SD1.5"].compile_backend or "off"
    avail = available_backends(device)
    lines = [
        f"GPU suite, {now}: {where}",
        (
            f"torch {torch.__version__}, diffusers {version('diffusers')}, triton {version('triton')}, "
            f"xformers {version('xformers')}; {settings.dtype}; torch.compile backend {compile_what}; {timing}"
        ),
        "backends: " + ", ".join(f"{n} {'available' if why is None else '(' + why + ')'}" for n, why in avail.items()),
        "auto picks: "
        + ", ".join(f"{f} -> {select_backend(f, device, settings.torch_dtype)}" for f in ("none", "per_key", "full")),
        f"command: python bench/gpu_suite.py {' '.join(argv)}".rstrip(),
    ]
    return "\n".join(lines)


def kernel_job(settings: SuiteSettings, budget: Budget) -> tuple[list[Row], dict[str, str]]:
    """Per-call checks, in a child process on CUDA. Returns the rows and {backend: why its UNet rows are skipped}
    for a backend whose check crashed or hung the child."""
    device, dtype = torch.device(settings.device), settings.torch_dtype
    tol = KERNEL_TOL[dtype]
    if not settings.kernel_subprocess:
        return kernel_rows(settings.kernel_cases, settings.backends, device, dtype, tol), {}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--kernel-checks", "--dtype", settings.dtype]
    cmd += ["--kernel-device", settings.device] + (["--kernel-tiny"] if settings.tiny else [])
    timeout = max(30.0, min(240.0, budget.left() - 60))
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
        return parse_child(done.stdout, done.returncode, done.stderr)
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return parse_child(stdout, None, f"timed out after {timeout:.0f} s")


def parse_child(stdout: str, code: int | None, stderr: str) -> tuple[list[Row], dict[str, str]]:
    """The child's rows; if it did not end cleanly, a row naming the call it was in and a skip for that backend."""
    rows: list[Row] = []
    running = None
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "running" in record:
            running = record["running"]
        else:
            rows.append(Row(**record))
            running = None
    if code == 0:
        return rows, {}
    tail = (stderr or "").strip().splitlines()[-1:] or ["no message"]
    why = f"the per-call check process ended (exit {code}: {tail[0][:160]})"
    case, form, backend = running if running else ("-", "-", "-")
    rows.append(Row("kernels", {"case": case, "bias": form, "backend": backend}, f"failed: {why}"))
    return rows, ({backend: f"its per-call check crashed ({why})"} if running else {})


def kernel_checks_child(dtype_name: str, device: str, tiny: bool) -> None:
    """`--kernel-checks`: the per-call checks as JSON lines (what is about to run, then each row)."""
    settings = DRY_RUN if tiny else FULL

    def start(case: str, form: str, backend: str) -> None:
        print(json.dumps({"running": [case, form, backend]}), flush=True)

    def emit(row: Row) -> None:
        print(json.dumps(asdict(row)), flush=True)

    dtype = DTYPES[dtype_name]
    kernel_rows(settings.kernel_cases, settings.backends, torch.device(device), dtype, KERNEL_TOL[dtype], emit, start)


def summary(rows: list[Row], settings: SuiteSettings, budget: Budget) -> str:
    """Studio/stock ratios, the goal figure, and the count of checks by outcome."""
    lines = []
    speed = [r for r in rows if r.section == "speed" and r.cells.get("control") == "none" and r.ok]
    studio_sdpa = [
        r for r in speed if str(r.cells["processors"]).startswith("studio") and r.cells["backend"] == "sdpa"
    ]
    for studio in studio_sdpa:
        stock_label = str(studio.cells["processors"]).replace("studio", "stock")
        stock = next((r for r in speed if r.cells["model"] == studio.cells["model"]
                      and r.cells["processors"] == stock_label), None)  # fmt: skip
        if stock is None:
            continue
        parts = []
        for mode in ("eager", "compiled"):
            a, b = studio.cells.get(f"{mode} calls/s"), stock.cells.get(f"{mode} calls/s")
            if isinstance(a, float) and isinstance(b, float):
                parts.append(f"{mode} {a / b:.3f} ({fmt(a)} vs {fmt(b)} it/s)")
        lines.append(
            f"{studio.cells['model']}, batch 2, {studio.cells['processors']} (sdpa) / stock: " + ", ".join(parts)
        )
    goal = [r for r in studio_sdpa if str(r.cells["model"]).startswith("SD1.5")
            and isinstance(r.cells.get("compiled calls/s"), float)]  # fmt: skip
    if goal and not settings.tiny:
        best = max(goal, key=lambda r: r.cells["compiled calls/s"])
        rate = best.cells["compiled calls/s"]
        verdict = "met" if rate >= GOAL_SD15_COMPILED_ITS else "not met"
        lines.append(
            f"goal >= {GOAL_SD15_COMPILED_ITS:.0f} it/s for SD1.5 512² compiled on an H100-class GPU: {verdict} "
            f"({rate:.1f} it/s, {best.cells['processors']}, sdpa)"
        )
    checks = [r for r in rows if r.section in ("kernels", "unet oracle")]
    counts = {k: 0 for k in ("ok", "FAIL", "failed", "skipped")}
    for r in checks:
        counts[r.status.split(":")[0]] = counts.get(r.status.split(":")[0], 0) + 1
    lines.append("oracle checks: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    lines.append(f"suite time {budget.elapsed():.0f} s")
    return "\n".join(lines)


def jobs(settings: SuiteSettings, budget: Budget) -> list[tuple[str, float, Callable[[], list[Row]]]]:
    """(name, seconds needed at least, job) in the order they run: most wanted first."""
    unets: dict[str, torch.nn.Module] = {}
    cost = CompileCost(dict(settings.compile_prior_s))
    skip: dict[str, str] = {}
    tol = UNET_TOL[settings.torch_dtype]
    others = [b for b in settings.backends if b != "sdpa"]

    def unet(model: str) -> torch.nn.Module:
        if model not in unets:
            unets[model] = build_unet(model, settings)
        return unets[model]

    def kernels_() -> list[Row]:
        rows, crashed = kernel_job(settings, budget)
        skip.update(crashed)
        return rows

    def speed(model: str, processors: str, backend: str, control: str = "none", timing: Timing | None = None,
              compile_ok: bool = True) -> Callable[[], list[Row]]:  # fmt: skip
        def run() -> list[Row]:
            name = model_name(model, settings)
            cells = {"model": name, "processors": processors, "backend": backend, "control": control}
            if backend in skip:
                return [skip_row("speed", cells, skip[backend])]
            return [
                speed_row(name, unet(model), settings.latent[model], processors, backend, control,
                          timing or settings.timing[model], budget, cost, compile_ok)
            ]  # fmt: skip

        return run

    def oracle(model: str) -> Callable[[], list[Row]]:
        return lambda: unet_oracle_rows(
            model_name(model, settings), unet(model), settings.latent[model], settings.backends, tol, skip=skip
        )

    def freecustom() -> list[Row]:
        model = "SD1.5"
        return freecustom_rows(
            model_name(model, settings), unet(model), settings.latent[model], settings.freecustom_refs,
            settings.timing[model],
        )  # fmt: skip

    extra = settings.extra_compiles
    # (name, seconds it needs at least, job): below that much budget a job is not started. The eager part of a
    # row takes seconds, but FlexAttention compiles a kernel per attention shape on its first UNet call.
    plan: list[tuple[str, float, Callable[[], list[Row]]]] = [("per-call oracle checks", 60.0, kernels_)]
    for model in ("SD1.5", "SDXL"):
        plan += [(f"{model} stock", 20.0, speed(model, "stock", "sdpa"))]
        plan += [(f"{model} studio sdpa", 20.0, speed(model, "studio", "sdpa"))]
    plan += [("FreeCustom R", 20.0, freecustom)]
    plan += [(f"{model} UNet oracle checks", 60.0, oracle(model)) for model in ("SD1.5", "SDXL")]
    plan += [(f"SD1.5 studio {b}", EAGER_S[b], speed("SD1.5", "studio", b, compile_ok=extra)) for b in others]
    sd15_timing = settings.timing["SD1.5"]
    if sd15_timing.compile_backend == "inductor" and extra:
        overhead = replace(sd15_timing, compile_mode="reduce-overhead")
        plan += [
            ("SD1.5 stock reduce-overhead", 20.0, speed("SD1.5", "stock", "sdpa", timing=overhead)),
            ("SD1.5 studio sdpa reduce-overhead", 20.0, speed("SD1.5", "studio", "sdpa", timing=overhead)),
        ]
    plan += [
        (f"SD1.5 studio sdpa, {c}", 20.0, speed("SD1.5", "studio", "sdpa", control=c, compile_ok=extra))
        for c in ("MRSA R=2", "MasaCtrl masked")
    ]
    plan += [(f"SDXL studio {b}", EAGER_S[b], speed("SDXL", "studio", b, compile_ok=extra)) for b in others]
    return plan


EAGER_S = {"flex": 90.0, "triton": 45.0, "xformers": 20.0}  # a row's eager part, first-call JIT included (guesses)


def run(settings: SuiteSettings, argv: list[str], out_dir: Path | None) -> list[Row]:
    budget = Budget(settings.budget_s)
    head = header(settings, argv)
    print(head, flush=True)
    rows: list[Row] = []
    for name, needs_s, job in jobs(settings, budget):
        start = time.perf_counter()
        section = "unet oracle" if "oracle" in name else "speed"
        if not budget.allows(needs_s):
            new = [skip_row(section, {"job": name}, budget.reason("this job", needs_s))]
        else:
            try:
                new = job()
            except Exception as exc:  # noqa: BLE001 - one job's failure (OOM, a backend's error) must not end the suite
                new = [failed_row(section, {"job": name}, exc)]
            if settings.device == "cuda":
                torch.cuda.empty_cache()
        rows += new
        print(f"[{budget.elapsed():5.0f} s] {name} ({time.perf_counter() - start:.0f} s)", flush=True)
        for row in new:
            print("    " + " | ".join(f"{k} {fmt(v)}" for k, v in row.cells.items() if v is not None)
                  + f" | {row.status}", flush=True)  # fmt: skip
        write(out_dir, head, rows)
    foot = summary(rows, settings, budget)
    print(tables(rows))
    print()
    print(foot, flush=True)
    write(out_dir, head, rows, foot)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU: tiny UNets at a 16² latent, fp32, 1-2 repeats")
    parser.add_argument("--quick", action="store_true", help="fewer repeats; compile only SD1.5 stock and studio-SDPA")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None, help="default fp16 (dry run fp32)")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds the suite may take (default 540; 300 quick)"
    )
    parser.add_argument("--no-compile", action="store_true", help="eager rows only")
    parser.add_argument("--out", type=Path, default=None, help="folder for gpu_suite.md and gpu_suite.json")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (the dry run uses 1)")
    parser.add_argument("--kernel-checks", action="store_true", help=argparse.SUPPRESS)  # the child of job 1
    parser.add_argument("--kernel-device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--kernel-tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kernel_checks:
        kernel_checks_child(args.dtype or FULL.dtype, args.kernel_device, args.kernel_tiny)
        return
    settings = DRY_RUN if args.dry_run else (QUICK if args.quick else FULL)
    if args.dtype:
        settings = replace(settings, dtype=args.dtype)
    if args.budget is not None:
        settings = replace(settings, budget_s=args.budget)
    if args.no_compile:
        settings = replace(settings, timing={m: replace(t, compile_backend=None) for m, t in settings.timing.items()})
    if settings.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_suite needs a CUDA device; --dry-run checks the script on CPU")
    torch.set_num_threads(args.threads or (1 if args.dry_run else torch.get_num_threads()))
    # CPU only: FlexAttention runs eagerly there (kernels/flex_backend.py says why) and warns on every shape.
    warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
    try:
        run(settings, sys.argv[1:], args.out)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
