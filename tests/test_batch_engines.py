"""The accelerate engine (2 CPU processes) and the Ray engine (local, 2 workers) reach the local engine's
outputs byte for byte, each item done exactly once, through the one manifest."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from studio.batch.manifest import Manifest
from tests.batch_soak import ROOT, batch_command, run_in_process, write_inputs

ITEMS = 3


def _engine_run(inputs: Path, out: Path, engine: str) -> subprocess.CompletedProcess:
    command = [*batch_command(inputs, out, 1), "--engine", engine, "--workers", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def local_outputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("engines")
    inputs = write_inputs(base / "in", ITEMS)
    run_in_process(inputs, base / "local", 1)
    return base


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["accelerate", "ray"])
def test_the_engine_gives_the_local_engines_bytes_each_item_once(local_outputs, engine):
    if engine == "ray":
        pytest.importorskip("ray")
    base = local_outputs
    out = base / engine
    result = _engine_run(base / "in", out, engine)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    with Manifest.open_existing(out) as manifest:
        records = manifest.items()
    assert [(r.state, r.attempts) for r in records] == [("done", 1)] * ITEMS
    for record in records:
        assert Path(record.output).read_bytes() == (base / "local" / record.key).read_bytes()
    assert sorted(p.name for p in out.glob("*.png")) == sorted(r.key for r in records)
