"""The `studio` CLI end to end: reproducible generation, inspect -> run round trip, and clean errors."""

from __future__ import annotations

import json

import pytest

from studio.cli import app
from studio.jobs import Job, json_schema
from tests.cli_results import ok
from tests.studio_inputs import (
    BAD_IMAGES,
    SDXL_REFINER_KEYS,
    png_bytes,
    write_malicious_pickle,
    write_safetensors_header,
)

GEN = ["--seed", "7", "--steps", "2", "--width", "64", "--height", "64", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("quiet_cli_env")


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_sd15_dir):
    """A working folder holding a relative link to the tiny model, as a user's project folder would."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-sd15").symlink_to(tiny_sd15_dir, target_is_directory=True)
    return tmp_path


@pytest.mark.slow
def test_generate_twice_then_inspect_and_rerun_give_identical_bytes(runner, workdir):
    ok(runner.invoke(app, ["generate", "a red ball", "--model", "tiny-sd15", *GEN, "--out", "a.png"]))
    ok(runner.invoke(app, ["generate", "a red ball", "--model", "tiny-sd15", *GEN, "--out", "b.png"]))
    first = (workdir / "a.png").read_bytes()
    assert first == (workdir / "b.png").read_bytes()

    inspected = runner.invoke(app, ["inspect", "a.png"])
    ok(inspected)
    job = Job.from_json(inspected.stdout)
    assert (job.prompt, job.model, job.seed, job.steps, job.width, job.height) == (
        "a red ball",
        "tiny-sd15",
        7,
        2,
        64,
        64,
    )
    (workdir / "job.json").write_text(inspected.stdout)
    ok(runner.invoke(app, ["run", "job.json", "--device", "cpu", "--out", "c.png"]))
    assert (workdir / "c.png").read_bytes() == first
    ok(runner.invoke(app, ["run", "a.png", "--device", "cpu", "--out", "d.png"]))  # straight from the image
    assert (workdir / "d.png").read_bytes() == first


@pytest.mark.slow
def test_invert_reports_the_error_and_writes_the_reconstruction(runner, workdir):
    (workdir / "in.png").write_bytes(png_bytes((64, 64)))
    result = runner.invoke(app, ["invert", "in.png", "--model", "tiny-sd15", "--steps", "2", "--out", "rec.png"])
    ok(result)
    assert "reconstruction error: mse" in result.stdout
    job = Job.from_json(runner.invoke(app, ["inspect", "rec.png"]).stdout)
    assert (job.task, job.image) == ("invert", "in.png")


def _bad_image(tmp_path, name):
    path = tmp_path / f"{name}.png"
    path.write_bytes(BAD_IMAGES[name]())
    return [str(path)]


def _pickle_model(tmp_path):
    path = write_malicious_pickle(tmp_path / "model.safetensors", tmp_path / "pwned")
    return ["--model", str(path)]


CASES = {
    **{f"image-{name}": ("inspect", lambda tmp, n=name: _bad_image(tmp, n)) for name in BAD_IMAGES},
    "invert-truncated": ("invert", lambda tmp: _bad_image(tmp, "truncated_png")),
    "unknown-model": ("generate", lambda tmp: ["x", "--model", "foo"]),
    "pickle-checkpoint": ("generate", lambda tmp: ["x", *_pickle_model(tmp)]),
    "refiner-checkpoint": (
        "generate",
        lambda tmp: ["x", "--model", str(write_safetensors_header(tmp / "r.safetensors", SDXL_REFINER_KEYS))],
    ),
    "bad-size": ("generate", lambda tmp: ["x", "--width", "65"]),
    "bad-out": ("generate", lambda tmp: ["x", "--out", str(tmp / "x.jpg")]),
    "future-job": ("run", lambda tmp: [_write(tmp / "job.json", Job().to_dict() | {"version": 99})]),
    "no-metadata": ("inspect", lambda tmp: [_plain_png(tmp)]),
}


def _write(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def _plain_png(tmp_path) -> str:
    from PIL import Image

    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    return str(path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_no_traceback(runner, tmp_path, case):
    command, make_args = CASES[case]
    result = runner.invoke(app, [command, *make_args(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("case", ["image-truncated_png", "unknown-model", "pickle-checkpoint"])
def test_debug_shows_the_traceback(runner, tmp_path, case):
    command, make_args = CASES[case]
    result = runner.invoke(app, [command, *make_args(tmp_path), "--debug"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: ")


def test_missing_argument_is_a_usage_error(runner):
    assert runner.invoke(app, ["generate"]).exit_code == 2


def test_schema_command_prints_the_job_schema(runner):
    result = runner.invoke(app, ["schema"])
    ok(result)
    assert json.loads(result.stdout) == json_schema()


def test_doctor_reports_backends(runner):
    result = runner.invoke(app, ["doctor", "--json"])
    ok(result)
    report = json.loads(result.stdout)
    assert report["packages"]["torch"]
    attention = report["attention"]
    assert set(attention["auto"]) == {"none", "per_key", "full"}
    assert all(attention["backends"][name] is None for name in attention["auto"].values())  # auto picks a usable one


def test_studio_ui_is_the_web_uis_own_command_reached_through_an_entry_point(runner):
    """`studio ui` runs `python -m ui`'s parser (the studio never imports `ui`): its refusal comes through."""
    listed = runner.invoke(app, ["--help"])
    assert " ui " in listed.stdout
    refused = runner.invoke(app, ["ui", "--host", "0.0.0.0"])
    assert refused.exit_code == 2
    assert "--auth USER:PASS" in refused.stderr
