"""The kill -9 soak: run a batch in a subprocess, SIGKILL it at random moments mid-item, resume each time,
then check the folder against an uninterrupted run of the same spec. Used by a test and by the bench."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SoakReport:
    kills: int
    items: int
    lost: int  # items with no output, or not marked done
    duplicated: int  # PNG files in the output folder that belong to no item
    corrupt: int  # outputs that are unreadable, or differ from the uninterrupted run, or from their recorded hash
    max_attempts: int


def write_inputs(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = np.full((64, 64, 3), rng.integers(0, 255, 3), np.uint8)
        top, left = rng.integers(0, 32, 2)
        pixels[top : top + 32, left : left + 32] = rng.integers(0, 255, 3)
        Image.fromarray(pixels).save(folder / f"item{i:03d}.png")
    return folder


def batch_command(inputs: Path, out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "studio.cli", "batch", "invert", "--inputs", str(inputs), "--out", str(out),
            "--steps", str(steps), "--threads", "1"]


def _done(out: Path) -> int:
    try:
        with sqlite3.connect(out / "manifest.sqlite", timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM items WHERE state = 'done'").fetchone()[0])
    except sqlite3.Error:
        return 0


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def soak(base: Path, *, items: int, kills: int, steps: int = 1, seed: int = 0) -> SoakReport:
    """Kill the batch `kills` times (each after at least one more item is done, then a random 0-0.6 s later)."""
    rng = random.Random(seed)
    inputs = write_inputs(base / "in", items)
    reference, out = base / "reference", base / "soak"
    run_in_process(inputs, reference, steps)
    done_kills = 0
    for _ in range(kills):
        before = _done(out) if out.exists() else 0
        process = subprocess.Popen(batch_command(inputs, out, steps), cwd=ROOT, env=_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and _done(out) <= before:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            done_kills += 1
        process.wait()
    subprocess.run(batch_command(inputs, out, steps), cwd=ROOT, env=_env(), check=True, capture_output=True)
    return compare(reference, out, items, done_kills)


def run_in_process(inputs: Path, out: Path, steps: int) -> None:
    """The uninterrupted run: the same spec as the CLI builds, on the local engine, in this process."""
    from studio.batch.cli import spec_from_flags
    from studio.batch.engines import RunSettings
    from studio.batch.run import run_batch
    from studio.registry import default_registry

    values = {"out": str(out), "model": "toyworld", "prompt": "", "negative": "", "steps": steps, "guidance": None,
              "option": None, "seed_rule": "derived", "seed": 0, "inputs": str(inputs), "prompts": None, "glob": "*",
              "mask_option": None, "mask_pattern": "auto", "overrides": None}
    run_batch(spec_from_flags("invert", values), default_registry(), RunSettings(threads=1))


def compare(reference: Path, out: Path, items: int, kills: int) -> SoakReport:
    with sqlite3.connect(out / "manifest.sqlite") as db:
        rows = db.execute("SELECT key, state, output, sha256, attempts FROM items").fetchall()
    expected = {f"item{i:03d}.png" for i in range(items)}
    lost = duplicated = corrupt = 0
    by_key = {key: (state, digest) for key, state, _, digest, _ in rows}
    for key in expected:
        state, digest = by_key.get(key, (None, None))
        path = out / key
        if state != "done" or not path.is_file():
            lost += 1
            continue
        data = path.read_bytes()
        try:
            Image.open(path).load()
            readable = True
        except Exception:  # noqa: BLE001 - any failure to decode is corruption
            readable = False
        if not readable or data != (reference / key).read_bytes() or hashlib.sha256(data).hexdigest() != digest:
            corrupt += 1
    duplicated = len({p.name for p in out.glob("*.png")} - expected) + len(list(out.glob(".studio-*.tmp")))
    return SoakReport(kills, items, lost, duplicated, corrupt, max(r[4] for r in rows))
