"""`studio edit`, `studio invert --uniform` and the `--inversion` option of the editing methods, end to end on
the tiny model: they run, round-trip through `studio inspect`/`run`, and refuse bad input in one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.cli import app
from studio.jobs import Job
from tests.cli_results import ok

COMMON = ["--model", "tiny-sd15", "--device", "cpu"]
pytestmark = pytest.mark.usefixtures("quiet_cli_env")


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_sd15_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-sd15").symlink_to(tiny_sd15_dir, target_is_directory=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 6:22] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    return tmp_path


def job_of(runner, path: str) -> Job:
    inspected = runner.invoke(app, ["inspect", path])
    ok(inspected)
    return Job.from_json(inspected.stdout)


@pytest.mark.slow
def test_edit_runs_both_inversions_and_round_trips(runner, workdir):
    args = ["a.png", "-p", "a blue cube", "--steps", "3", *COMMON]
    ok(runner.invoke(app, ["edit", *args, "--out", "uam.png"]))
    ok(runner.invoke(app, ["edit", *args, "--inversion", "ddim", "--out", "ddim.png"]))
    job = job_of(runner, "uam.png")
    assert job.task == "edit" and job.options["edit"]["inversion"] == "uniform"
    (workdir / "job.json").write_text(job.to_json())
    ok(runner.invoke(app, ["run", "job.json", "--device", "cpu", "--out", "again.png"]))
    assert (workdir / "again.png").read_bytes() == (workdir / "uam.png").read_bytes()
    assert (workdir / "uam.png").read_bytes() != (workdir / "ddim.png").read_bytes()


@pytest.mark.slow
def test_invert_uniform_and_mutual_uniform_inversion_run(runner, workdir):
    ok(runner.invoke(app, ["invert", "a.png", "--steps", "3", "--uniform", *COMMON, "--out", "u.png"]))
    ok(runner.invoke(app, ["invert", "a.png", "--steps", "3", *COMMON, "--out", "d.png"]))
    assert job_of(runner, "u.png").options["invert"]["uniform"] is True
    assert (workdir / "u.png").read_bytes() != (workdir / "d.png").read_bytes()
    mutual = ["mutual", "a dog", "--image", "a.png", "--steps", "2", "--seed", "1", "--inversion", "uniform"]
    ok(runner.invoke(app, [*mutual, *COMMON, "--out", "mutual.png"]))
    visctrl = ["visctrl", "a.png", "--target-mask", "m.png", "--reference", "b.png", "--reference-mask", "m.png"]
    ok(runner.invoke(app, [*visctrl, "--steps", "2", "--inversion", "uniform", *COMMON, "--out", "v.png"]))


BAD = {
    "unknown-inversion": (
        ["edit", "a.png", "-p", "a cube", "--inversion", "null"],
        "unknown inversion mode 'null'; expected one of ddim, uniform",
    ),
    "unknown-inversion-mutual": (
        ["mutual", "a cube", "--image", "a.png", "--inversion", "DDIM"],
        "unknown inversion mode 'DDIM'",
    ),
    "edit-without-target-prompt": (["edit", "a.png"], "edit: give the target prompt with --prompt"),
    "edit-target-equals-source": (
        ["edit", "a.png", "-p", "a cube", "--source-prompt", "a cube"],
        "target prompt equals the source prompt",
    ),
    "uniform-inversion-without-image": (
        ["mutual", "a cube", "--inversion", "uniform"],
        "--inversion uniform needs a real source image",
    ),
    "edit-other-sampler": (["edit", "a.png", "-p", "a cube", "--sampler", "euler"], "DDIM"),
    "edit-quantile-range": (["edit", "a.png", "-p", "a cube", "--quantile", "1.5"], "between 0.0 and 1.0"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_clear_line(runner, workdir, case):
    args, message = BAD[case]
    result = runner.invoke(app, [*args, *COMMON])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output
