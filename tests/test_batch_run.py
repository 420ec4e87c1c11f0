"""`studio batch` on the local engine: bad inputs fail alone with one line, good ones match a direct run,
resume does nothing after a finished batch, another spec is refused, Ctrl-C and out-of-memory are survivable."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.batch.manifest import Manifest
from studio.cli import build_app
from studio.registry import default_registry
from tests.batch_inputs import write_bad_images, write_mask_cases

pytestmark = pytest.mark.usefixtures("quiet_cli_env")


def _batch(runner, *args):
    result = runner.invoke(build_app(default_registry()), ["batch", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def _states(out: Path) -> dict[str, tuple[str, str | None]]:
    with Manifest.open_existing(out) as manifest:
        return {r.key: (r.state, r.error) for r in manifest.items()}


def _good_folder(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        pixels = np.full((64, 64, 3), 40 * i, np.uint8)
        pixels[16:48, 8 + 4 * i : 40 + 4 * i] = (200, 30 * i, 30)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    return folder


def _run_alone(job_dict):
    """The oracle: the item's job run directly by the studio runner, not by the batch."""
    from studio.jobs import Job
    from studio.model_cache import ModelCache
    from studio.runner import run_job

    return np.asarray(run_job(Job.from_dict(job_dict), ModelCache()).images[0])


@pytest.mark.slow
def test_bad_inputs_fail_alone_with_one_line_and_good_ones_match_a_direct_run(tmp_path, runner):
    marker = tmp_path / "unpickled"
    expected = write_bad_images(tmp_path / "in", marker)
    out = tmp_path / "out"
    result = _batch(runner, "invert", "--inputs", tmp_path / "in", "--out", out, "--steps", 1, "--threads", 1)
    assert result.exit_code == 1  # some item failed
    states = _states(out)
    assert set(states) == set(expected)
    for name, outcome in expected.items():
        state, error = states[name]
        if outcome == "done":
            assert state == "done", (name, error)
            assert (out / f"{Path(name).stem}.png").is_file()
        else:
            assert state == "failed" and re.search(outcome, error), (name, error)
            assert "\n" not in error and f"failed: {error}" in result.output
    assert not marker.exists()  # the pickle named .png was never unpickled
    job = {"version": 2, "task": "invert", "model": "toyworld", "image": str(tmp_path / "in" / "good-1.png"), "steps": 1}
    assert np.array_equal(np.asarray(Image.open(out / "good-1.png")), _run_alone(job))


@pytest.mark.slow
def test_masks_by_rule_bad_wrong_size_empty_or_missing_fail_alone(tmp_path, runner):
    expected = write_mask_cases(tmp_path / "in")
    out = tmp_path / "out"
    result = _batch(runner, "mutual", "--inputs", tmp_path / "in", "--glob", "*.png", "--out", out, "--steps", 1,
                    "--threads", 1, "--mask-option", "source_mask", "-p", "a red star")
    assert result.exit_code == 1
    states = _states(out)
    for name, outcome in expected.items():
        state, error = states[name]
        assert (state == "done") if outcome == "done" else (state == "failed" and re.search(outcome, error)), (name, error)


@pytest.mark.slow
def test_resume_skips_done_items_status_reports_and_another_spec_is_refused(tmp_path, runner):
    inputs = _good_folder(tmp_path / "in")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    out = tmp_path / "out"
    first = _batch(runner, "invert", "--inputs", inputs, "--out", out, "--steps", 1, "--threads", 1)
    assert first.exit_code == 1 and "3 done, 1 failed" in first.output
    written = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("img*.png")}
    assert len(written) == 3

    again = _batch(runner, out / "batch.json")  # the spec the flags built, written beside the outputs
    assert again.exit_code == 1 and "(0 run now" in again.output
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("img*.png")} == written

    status = _batch(runner, "status", out)
    assert status.exit_code == 0
    assert status.output.splitlines()[0] == "3 done, 1 failed, 0 pending, 0 running"
    assert "failed: broken.png:" in status.output

    retried = _batch(runner, out / "batch.json", "--retry-failed")
    assert "(1 run now" in retried.output
    with Manifest.open_existing(out) as manifest:
        assert manifest.items("failed")[0].attempts == 2

    changed = _batch(runner, "invert", "--inputs", inputs, "--out", out, "--steps", 2, "--threads", 1)
    assert changed.exit_code == 2 and "different spec" in changed.output and "--force-new" in changed.output
    forced = _batch(runner, "invert", "--inputs", inputs, "--out", out, "--steps", 2, "--threads", 1, "--force-new")
    assert "3 done, 1 failed" in forced.output and "(4 run now" in forced.output


def test_a_bad_spec_is_refused_before_anything_runs(tmp_path, runner):
    (tmp_path / "empty").mkdir()
    inputs = _good_folder(tmp_path / "in", 1)
    for args, message in [
        (["paint.json"], "no such spec file"),
        (["invert", "--inputs", tmp_path / "nowhere", "--out", tmp_path / "o"], "inputs.folder: .* is not a folder"),
        (["invert", "--inputs", tmp_path / "empty", "--out", tmp_path / "o"], "inputs.folder: no files match"),
        (["mutual", "--inputs", inputs, "--out", tmp_path / "o", "--option", "strat=1"], "strat"),
        (["invert", "--inputs", tmp_path, "--out", tmp_path / "o", "--engine", "spark"], "--engine 'spark'"),
    ]:
        result = _batch(runner, *args)
        assert result.exit_code == 2 and re.search(message, result.output), result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_ctrl_c_puts_the_current_item_back_and_resume_finishes(tmp_path, runner, monkeypatch):
    from studio.batch import groups

    inputs = _good_folder(tmp_path / "in")
    out = tmp_path / "out"
    real = groups.render
    calls = []

    def interrupted_on_second(item, *args, **kwargs):
        calls.append(item.key)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(item, *args, **kwargs)

    monkeypatch.setattr(groups, "render", interrupted_on_second)
    result = _batch(runner, "invert", "--inputs", inputs, "--out", out, "--steps", 1, "--threads", 1)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert [s for s, _ in _states(out).values()] == ["done", "pending", "pending"]
    monkeypatch.setattr(groups, "render", real)
    resumed = _batch(runner, out / "batch.json")
    assert resumed.exit_code == 0 and "3 done, 0 failed" in resumed.output and "(2 run now" in resumed.output


@pytest.mark.slow
def test_out_of_memory_is_retried_once(tmp_path, runner, monkeypatch):
    from studio.batch import groups
    from studio.batch.worker import OutOfMemory

    inputs = _good_folder(tmp_path / "in", 2)
    real = groups.render
    failures = {"img0.png": 1, "img1.png": 2}  # img0 runs out of memory once, img1 twice

    def short_of_memory(item, *args, **kwargs):
        if failures.get(item.key, 0) > 0:
            failures[item.key] -= 1
            raise OutOfMemory("out of memory running invert")
        return real(item, *args, **kwargs)

    monkeypatch.setattr(groups, "render", short_of_memory)
    result = _batch(runner, "invert", "--inputs", inputs, "--out", tmp_path / "out", "--steps", 1, "--threads", 1)
    states = _states(tmp_path / "out")
    assert states["img0.png"][0] == "done"
    assert states["img1.png"][0] == "failed" and "retried once" in states["img1.png"][1]
    assert result.exit_code == 1
