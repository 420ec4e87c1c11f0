"""`studio regions` and `studio repaint` end to end on the tiny model: reproducible outputs, a layout file,
repaint from the image's own metadata, and every bad input as one clear line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from studio.cli import app
from studio.jobs import Job
from tests.cli_results import one_line_error
from tests.test_cli_methods import ok, workdir  # noqa: F401  (the fixture: a.png, m.png, tiny model)

COMMON = ["--model", "tiny-sd15", "--device", "cpu", "--steps", "2", "-W", "64", "-H", "64"]
pytestmark = pytest.mark.usefixtures("quiet_cli_env")


def rerun_matches(runner, workdir, first: str) -> Job:
    """`studio inspect` gives the job back, and `studio run` on it re-makes the same bytes."""
    inspected = runner.invoke(app, ["inspect", first])
    ok(inspected)
    (workdir / f"{first}.json").write_text(inspected.stdout)
    ok(runner.invoke(app, ["run", f"{first}.json", "--device", "cpu", "--out", f"again-{first}"]))
    assert (workdir / f"again-{first}").read_bytes() == (workdir / first).read_bytes()
    return Job.from_json(inspected.stdout)


@pytest.mark.slow
def test_regions_round_trip_a_layout_file_and_repaint_from_metadata(runner, workdir):
    regions = ["--region", "0,0,0.5,1:a red ball", "--mask-region", "m.png:a blue cube"]
    ok(runner.invoke(app, ["regions", "a room", *regions, "--seed", "2", *COMMON, "--out", "r.png"]))
    job = rerun_matches(runner, workdir, "r.png")
    assert job.task == "regions" and job.options["regions"]["regions"] == [{"region": "0,0,0.5,1:a red ball"}]

    layout = {"regions": [{"box": [0, 0, 0.5, 1], "prompt": "a red ball"}, {"mask": "m.png", "prompt": "a blue cube"}]}
    (workdir / "layout.json").write_text(json.dumps(layout))
    ok(runner.invoke(app, ["regions", "a room", "--layout", "layout.json", "--seed", "2", *COMMON, "--out", "l.png"]))
    assert np.array_equal(np.asarray(Image.open("l.png")), np.asarray(Image.open("r.png")))  # the same regions
    assert rerun_matches(runner, workdir, "l.png").options["regions"]["layout"] is None  # written into the job

    ok(runner.invoke(app, ["repaint", "r.png", "--region", "0.5,0.5,0.5,0.5:a green star", *COMMON, "--out", "p.png"]))
    before, after = np.asarray(Image.open("r.png").convert("RGB")), np.asarray(Image.open("p.png").convert("RGB"))
    assert np.array_equal(before[:32], after[:32]) and np.array_equal(before[:, :32], after[:, :32])
    repainted = rerun_matches(runner, workdir, "p.png")
    assert (repainted.seed, repainted.prompt) == (2, "a room")  # from r.png's metadata


BAD = {
    "outside": (["regions", "x", "--region", "0.7,0,0.5,1:a"], "lies outside the image"),
    "zero-area": (["regions", "x", "--region", "0.1,0.1,0,0.5:a"], "zero area"),
    "not-numbers": (["regions", "x", "--region", "a,b,c,d:a"], "x,y,w,h must be four numbers"),
    "no-colon": (["regions", "x", "--region", "0,0,1,1"], 'write "x,y,w,h:prompt"'),
    "empty-prompt": (["regions", "x", "--region", "0,0,1,1:  "], "region prompt is empty"),
    "no-region": (["regions", "x"], "give at least one --region"),
    "too-many": (["regions", "x", *["--region", "0,0,1,1:a"] * 17], "at most 16"),
    "both": (["regions", "x", "--region", "0,0,1,1:a", "--layout", "l.json"], "not both"),
    "delta": (["regions", "x", "--region", "0,0,1,1:a", "--delta", "2"], "between 0.0 and 1.0"),
    "repaint-two": (["repaint", "a.png", "--region", "0,0,1,1:a", "--region", "0,0,1,1:b"], "one region"),
    "repaint-sampler": (["repaint", "a.png", "--region", "0,0,1,1:a", "--sampler", "euler"], "DDIM"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_regions_are_one_line_before_any_model_loads(runner, workdir, case):
    args, expected = BAD[case]
    assert expected in one_line_error(runner.invoke(app, [*args, "--model", "no-such-model"]))


RUN_BAD = {
    "no-metadata": (["repaint", "a.png", "--region", "0,0,0.5,0.5:a"], "give --seed"),
    "no-latent-cell": (["regions", "x", "--region", "0.5,0.5,0.01,0.01:a"], "covers no latent cell"),
    "empty-mask": (["regions", "x", "--mask-region", "empty.png:a"], "the mask is empty"),
    "missing-layout": (["regions", "x", "--layout", "none.json"], "layout file not found"),
    "bad-layout": (["regions", "x", "--layout", "a.png"], "not JSON"),
}


@pytest.mark.parametrize("case", sorted(RUN_BAD))
def test_bad_regions_found_at_run_are_one_line(runner, workdir, case):
    args, expected = RUN_BAD[case]
    assert expected in one_line_error(runner.invoke(app, [*args, *COMMON]))
