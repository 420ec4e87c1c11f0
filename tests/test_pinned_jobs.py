"""Job files made before the task-declaration redesign still make the same pictures.

The expected PNGs in `tests/pinned_jobs/expected/` were written by `studio run tests/pinned_jobs/<task>.json`
from the repository root on the code before the redesign; every later change must reproduce them. The
pixels are compared, not the file bytes, so that the embedded metadata may gain fields; and a difference
of at most one grey level is allowed so a CPU with other vector units cannot fail the test. On the machine
that made them the reruns are byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli import app

ROOT = Path(__file__).resolve().parents[1]
JOBS = ROOT / "tests" / "pinned_jobs"
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quiet_cli_env")]


@pytest.mark.parametrize("task", ["generate", "invert", "mutual", "visctrl", "freecustom"])
def test_a_pinned_job_makes_the_picture_it_made_before(task, runner, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the job files name their inputs relative to the repository root
    out = tmp_path / f"{task}.png"
    result = runner.invoke(app, ["run", str(JOBS / f"{task}.json"), "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    made = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    expected = np.asarray(Image.open(JOBS / "expected" / f"{task}.png").convert("RGB"), dtype=np.int16)
    assert made.shape == expected.shape
    assert int(np.abs(made - expected).max()) <= 1
