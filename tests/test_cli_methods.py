"""The method commands end to end on the tiny model: reproducible outputs, inspect -> run, clean errors."""

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
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 12:44] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    Image.fromarray(mask).save(tmp_path / "m.jpg", quality=40)  # JPEG-noisy masks are fine
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray(mask[:32]).save(tmp_path / "short.png")
    return tmp_path


def rerun_matches(runner, workdir, first: str) -> Job:
    """`studio inspect` gives the job back, and `studio run` on it re-makes the same bytes."""
    inspected = runner.invoke(app, ["inspect", first])
    ok(inspected)
    (workdir / "job.json").write_text(inspected.stdout)
    ok(runner.invoke(app, ["run", "job.json", "--device", "cpu", "--out", "again.png"]))
    assert (workdir / "again.png").read_bytes() == (workdir / first).read_bytes()
    return Job.from_json(inspected.stdout)


@pytest.mark.slow
def test_mutual_real_image_round_trip(runner, workdir):
    args = ["a dog", "--image", "a.png", "--steps", "3", "--seed", "1", *COMMON]
    ok(runner.invoke(app, ["mutual", *args, "--out", "out.png"]))
    job = rerun_matches(runner, workdir, "out.png")
    assert job.task == "mutual" and job.image == "a.png"


@pytest.mark.slow
def test_freecustom_round_trip_and_masks_from_jpeg(runner, workdir):
    args = [
        "a cat and a hat",
        "--ref",
        "a.png",
        "--mask",
        "m.jpg",
        "--caption",
        "a cat",
        "--ref",
        "b.png",
        "--mask",
        "m.png",
        "--caption",
        "a hat",
        "--steps",
        "2",
        "--seed",
        "3",
        "--width",
        "64",
        "--height",
        "64",
        *COMMON,
    ]
    ok(runner.invoke(app, ["freecustom", *args, "--out", "out.png"]))
    job = rerun_matches(runner, workdir, "out.png")
    assert [r["image"] for r in job.options["freecustom"]["references"]] == ["a.png", "b.png"]


@pytest.mark.slow
def test_visctrl_writes_the_pasted_result_and_round_trips(runner, workdir):
    args = [
        "a.png",
        "--target-mask",
        "m.png",
        "--reference",
        "b.png",
        "--reference-mask",
        "m.png",
        "--steps",
        "3",
        "--passes",
        "2",
        "--later-steps",
        "2",
        *COMMON,
    ]
    ok(runner.invoke(app, ["visctrl", *args, "--out", "out.png"]))
    out = np.asarray(Image.open(workdir / "out.png").convert("RGB")).astype(int)
    original = np.asarray(Image.open(workdir / "a.png").convert("RGB")).astype(int)
    outside = np.asarray(Image.open(workdir / "m.png")) < 128
    assert np.array_equal(out[outside], original[outside])
    rerun_matches(runner, workdir, "out.png")


BAD = {
    "mask-size": [
        "visctrl",
        "a.png",
        "--target-mask",
        "short.png",
        "--reference",
        "b.png",
        "--reference-mask",
        "m.png",
    ],
    "empty-mask": [
        "visctrl",
        "a.png",
        "--target-mask",
        "empty.png",
        "--reference",
        "b.png",
        "--reference-mask",
        "m.png",
    ],
    "unreadable-reference": ["freecustom", "x", "--ref", "nothing.png", "--mask", "m.png"],
    "not-an-image-reference": ["visctrl", "a.png", "--target-mask", "m.png", "--reference", "job.txt"],
    "mask-count": ["freecustom", "x", "--ref", "a.png", "--ref", "b.png", "--mask", "m.png"],
    "no-mask-no-concept": ["freecustom", "x", "--ref", "a.png", "--steps", "1"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_method_input_is_one_clear_line(runner, workdir, case):
    (workdir / "job.txt").write_text("not an image")
    result = runner.invoke(app, [*BAD[case], *COMMON])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output


def test_more_references_than_memory_allows_is_refused_with_the_estimate(workdir, monkeypatch):
    import studio.devices
    from studio.errors import JobSpecError
    from studio.model_cache import ModelCache
    from studio.runner import run_job

    monkeypatch.setattr(studio.devices, "available_memory_bytes", lambda device: 1 << 20)
    refs = [{"image": "a.png", "mask": "m.png", "caption": "x"}] * 3
    job = Job(
        task="freecustom",
        model="tiny-sd15",
        prompt="x",
        steps=1,
        width=64,
        height=64,
        options={"freecustom": {"references": refs}},
    )
    with pytest.raises(JobSpecError, match=r"3 references .* GiB \(estimate\)"):
        run_job(job, ModelCache())
