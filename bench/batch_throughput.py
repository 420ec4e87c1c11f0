"""Batch throughput, manifest overhead and the kill -9 soak (printed; figures go in the README).

    python bench/batch_throughput.py [--items 16] [--steps 10] [--kills 20] [--soak-items 30]

Throughput: toyworld `generate` over a prompt list, items/s of the sequential single-image CLI loop
(one `studio generate` process per image), `studio batch` local per item, local grouped (UNet batches of
4), accelerate with 2 CPU processes and Ray with 2 workers; one torch thread per process throughout. Every figure includes
its process start and model load, as a user would see it. Manifest: ms per item for add + claim + done,
and the time a no-op resume of a finished 1,000-item batch takes (planning, validation, manifest).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "gray"]
SHAPES = ["star", "ring", "square", "circle", "cross", "triangle"]


def _env() -> dict[str, str]:
    # One torch thread per process everywhere, so the engines are compared at equal threads per worker.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _prompts(count: int) -> list[str]:
    return [f"a {COLOURS[i % len(COLOURS)]} {SHAPES[i % len(SHAPES)]}" for i in range(count)]


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - start


def throughput(base: Path, items: int, steps: int) -> dict[str, float]:
    prompts = _prompts(items)
    (base / "prompts.txt").write_text("\n".join(prompts) + "\n")
    rates = {}
    loop = prompts[: min(4, items)]  # a process per image: measured on 4, the rate is per image
    seconds = sum(
        _timed([sys.executable, "-m", "studio.cli", "generate", p, "--steps", str(steps), "--seed", str(i),
                "--out", str(base / f"cli-{i}.png")])
        for i, p in enumerate(loop)
    )
    rates["sequential CLI loop"] = len(loop) / seconds
    batch = [sys.executable, "-m", "studio.cli", "batch", "generate", "--prompts", str(base / "prompts.txt"),
             "--steps", str(steps)]
    runs = {
        "batch local, per item": ["--out", str(base / "local"), "--threads", "1"],
        "batch local, UNet batches of 4": [],
        "batch accelerate, 2 processes": ["--out", str(base / "accelerate"), "--engine", "accelerate", "--threads", "1"],
        "batch ray, 2 workers": ["--out", str(base / "ray"), "--engine", "ray", "--threads", "1"],
    }
    for name, extra in runs.items():
        if "UNet batches" in name:
            spec = base / "grouped.json"
            spec.write_text(
                '{"job": {"task": "generate", "steps": %d}, "inputs": {"prompts": "prompts.txt"},'
                ' "out": "grouped", "group_size": 4}' % steps
            )
            command = [sys.executable, "-m", "studio.cli", "batch", str(spec), "--threads", "1"]
        else:
            command = batch + extra
        rates[name] = items / _timed(command)
    return rates


def manifest_overhead(base: Path, count: int = 1000) -> tuple[float, float]:
    """(ms per item for add + claim + mark_done, seconds for a no-op resume of a finished `count`-item batch)."""
    from studio.batch.engines import RunSettings
    from studio.batch.manifest import Manifest
    from studio.batch.run import prepare, run_batch
    from studio.batch.spec import parse_spec
    from studio.registry import default_registry

    (base / "many.txt").write_text("\n".join(_prompts(count)) + "\n")
    spec = parse_spec(
        {"job": {"task": "generate", "steps": 1}, "inputs": {"prompts": "many.txt"}, "out": "many"}, "bench"
    ).resolved(base)
    start = time.perf_counter()
    with Manifest.open(Path(spec.out), prepare(spec, default_registry()).fingerprint) as manifest:
        manifest.add(f"{i:05d}" for i in range(count))
        while (key := manifest.claim("bench")) is not None:
            manifest.mark_done(key, f"{key}.png", "0" * 64)
    per_item_ms = (time.perf_counter() - start) / count * 1000
    start = time.perf_counter()
    summary = run_batch(spec, default_registry(), RunSettings())
    resume_s = time.perf_counter() - start
    assert summary.ran == 0 and summary.counts["done"] == count
    return per_item_ms, resume_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--soak-items", type=int, default=60)
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "manifest", "soak"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        if "throughput" not in args.skip:
            rates = throughput(base, args.items, args.steps)
            loop = rates["sequential CLI loop"]
            print(f"toyworld generate, {args.items} prompts, {args.steps} steps, 64x64:")
            for name, rate in rates.items():
                print(f"  {name:34s} {rate:6.3f} items/s  {rate / loop:5.2f}x")
        if "manifest" not in args.skip:
            per_item, resume = manifest_overhead(base)
            print(f"manifest: {per_item:.2f} ms per item (add + claim + done, WAL, synchronous=FULL);"
                  f" no-op resume of a finished 1,000-item batch {resume:.2f} s")
        if "soak" not in args.skip:
            from tests.batch_soak import soak

            start = time.perf_counter()
            report = soak(base / "soak", items=args.soak_items, kills=args.kills, steps=1, seed=0)
            print(f"kill -9 soak: {report.kills} kills, {report.items} items, {report.lost} lost,"
                  f" {report.duplicated} duplicated, {report.corrupt} corrupt (max attempts per item"
                  f" {report.max_attempts}; {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
