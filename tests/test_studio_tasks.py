"""Tasks are declarations: a new method gets its command, schema entry, metadata handling and a place in
composed jobs from its one declaration (the example `uniform` method in `tests/example_tasks/`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from studio.cli import app as default_app
from studio.cli import build_app
from studio.errors import JobSpecError
from studio.jobs import Job, json_schema
from studio.metadata import png_text_chunks
from studio.registry import default_registry, discover
from tests.cli_results import ok, one_line_error
from tests.example_tasks.uniform import UNIFORM, UniformAttention
from tests.test_cli_methods import workdir  # noqa: F401  (the fixture: a.png, b.png, m.png, the tiny model)

REGISTRY = default_registry().with_declarations(*discover("tests.example_tasks"))
APP = build_app(REGISTRY)
COMMON = ["--model", "tiny-sd15", "--device", "cpu", "--seed", "5", "--steps", "2", "-W", "64", "-H", "64"]
pytestmark = pytest.mark.usefixtures("quiet_cli_env")


def rerun_matches(runner, workdir, first: str) -> Job:
    """`studio inspect` gives the job back, and `studio run` on it re-makes the same bytes."""
    inspected = runner.invoke(APP, ["inspect", first])
    ok(inspected)
    (workdir / "job.json").write_text(inspected.stdout)
    ok(runner.invoke(APP, ["run", "job.json", "--device", "cpu", "--out", "again.png"]))
    assert (workdir / "again.png").read_bytes() == (workdir / first).read_bytes()
    return Job.from_json(inspected.stdout, REGISTRY)


def test_the_uniform_control_answers_every_query_with_the_mean_value():
    """Oracle: softmax of equal logits is 1/Lk, so attention is the plain mean of the values."""
    from attention_processors.control import AttentionCall
    from attention_processors.processor import attention_probs

    value = torch.randn(2, 3, 10, 4)
    query, key = torch.randn(2, 3, 10, 4), torch.zeros(2, 3, 10, 4)  # zero keys: every logit equal
    expected = attention_probs(query, key, None) @ value  # [2, 3, 10, 4]
    call = AttentionCall(site=None, state=None, query=query, key=key, value=value, module=None)
    assert torch.allclose(UniformAttention().edit_output(call, torch.zeros_like(query)), expected, atol=1e-6)


def test_the_example_task_gets_a_command_with_its_declared_flags(runner):
    result = runner.invoke(APP, ["uniform", "--help"])
    ok(result)
    for flag in ("--start", "--end", "--levels", "--mask", "--control", "--seed", "--width"):
        assert flag in result.stdout
    assert "uniform" not in [c.name for c in default_app.registered_commands]  # only the test's registry has it


def test_the_example_task_and_control_are_in_the_schema():
    schema = json_schema(REGISTRY)
    assert "uniform" in schema["properties"]["task"]["enum"]
    start = schema["$defs"]["uniform_options"]["properties"]["start"]
    assert (start["default"], start["minimum"], start["maximum"]) == (UNIFORM.start, 0.0, 1.0)
    assert "uniform" in schema["$defs"]["ControlSpec"]["properties"]["kind"]["enum"]
    assert "uniform" not in json_schema()["properties"]["task"]["enum"]  # the default registry is untouched


def test_declared_file_fields_are_made_portable_in_metadata(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    absolute = str(tmp_path / "masks" / "m.png")
    job = Job.from_dict(
        {"version": 2, "task": "uniform", "model": "toyworld", "options": {"uniform": {"mask": absolute}},
         "controls": [{"kind": "uniform", "options": {"mask": absolute, "end": 0.25}}]},
        REGISTRY,
    )
    embedded = json.loads(png_text_chunks(job)["studio_job"])
    assert embedded["options"]["uniform"]["mask"] == "masks/m.png"
    assert embedded["controls"][0]["options"] == {"mask": "masks/m.png", "end": 0.25}
    assert str(tmp_path) not in json.dumps(embedded)


@pytest.mark.slow
def test_the_example_task_runs_and_round_trips(runner, workdir):
    ok(runner.invoke(APP, ["uniform", "a red ball", "--end", "1.0", "--mask", "m.png", *COMMON, "--out", "u.png"]))
    job = rerun_matches(runner, workdir, "u.png")
    assert job.task == "uniform" and job.options["uniform"]["mask"] == "m.png"
    ok(runner.invoke(APP, ["generate", "a red ball", *COMMON, "--out", "plain.png"]))
    assert not np.array_equal(np.asarray(Image.open("u.png")), np.asarray(Image.open("plain.png")))


@pytest.mark.slow
def test_a_task_with_an_extra_control_equals_the_pipeline_call_with_both(runner, workdir):
    """Oracle: the pipeline called directly with MasaCtrl and the uniform control, same seed."""
    from pipelines.backbone import Backbone
    from pipelines.mutual import mutual_edit
    from studio.model_cache import ModelCache

    control = "uniform:end=1.0,levels=2"
    args = ["a dog", "--source-prompt", "a cat", "--control", control, *COMMON, "--out", "c.png"]
    ok(runner.invoke(APP, ["mutual", *args]))
    job = rerun_matches(runner, workdir, "c.png")
    assert [(c.kind, c.options) for c in job.controls] == [("uniform", {"end": 1.0, "levels": 2})]
    backbone = Backbone.from_pipeline(ModelCache().get("tiny-sd15"))
    from attention_processors import SiteFilter, StepWindow

    extra = UniformAttention(StepWindow(0.0, 1.0), SiteFilter(kind="self", levels=(0, 1)))
    expected = mutual_edit(
        backbone, "a dog", source_prompt="a cat", num_inference_steps=2, width=64, height=64,
        generator=torch.Generator("cpu").manual_seed(5), controls=[extra],
    ).images[0]
    assert np.array_equal(np.asarray(Image.open("c.png").convert("RGB")), np.asarray(expected))


@pytest.mark.slow
def test_the_default_cli_composes_a_control_from_a_job_file(runner, workdir):
    """A version-2 job file naming an extra control runs through `studio run` of an app that declares it."""
    data = {"version": 2, "task": "generate", "model": "tiny-sd15", "prompt": "a ball", "seed": 1, "steps": 2,
            "width": 64, "height": 64, "controls": [{"kind": "uniform", "options": {"end": 1.0}}]}
    (workdir / "job.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(data).encode())  # a BOM is fine
    ok(runner.invoke(APP, ["run", "job.json", "--device", "cpu", "--out", "j.png"]))
    rerun_matches(runner, workdir, "j.png")


UNKNOWN = {
    "control-kind": (["generate", "x", "--control", "dance"], "unknown control kind 'dance'; known: classdiffusion, face_id, ip_adapter, lora, residuals, uniform"),
    "control-option": (["generate", "x", "--control", "uniform:speed=2"], "unknown option controls[0].uniform.speed"),
    "control-range": (["generate", "x", "--control", "uniform:end=2"], "must be between 0.0 and 1.0"),
    "control-syntax": (["generate", "x", "--control", "uniform:end"], "write KIND:key=value,key=value"),
    "option-range": (["mutual", "x", "--levels", "9"], "options.mutual.levels must be between 1 and 3"),
    "passes-range": (["visctrl", "a.png", "-r", "a.png", "--passes", "100"], "passes must be between 1 and 20"),
}


@pytest.mark.parametrize("case", sorted(UNKNOWN))
def test_bad_controls_and_ranges_are_one_line_before_any_model_loads(runner, workdir, case):
    args, expected = UNKNOWN[case]
    assert expected in one_line_error(runner.invoke(APP, [*args, "--model", "no-such-model"]))


def test_a_json_array_job_file_is_not_a_job(runner, tmp_path):
    (tmp_path / "job.json").write_text("[1, 2]")
    assert "a job must be a JSON object" in one_line_error(runner.invoke(APP, ["run", str(tmp_path / "job.json")]))


def test_version_1_jobs_are_read_as_version_2_without_controls():
    job = Job.from_dict({"version": 1, "task": "mutual", "model": "toyworld", "options": {"mutual": {"start": 0.1}}})
    assert job.version == 2 and job.controls == ()
    with pytest.raises(JobSpecError, match="controls"):
        Job.from_dict({"version": 1, "task": "generate", "model": "toyworld", "controls": []})


def test_every_count_option_has_an_upper_bound():
    for task in REGISTRY.tasks.values():
        for name, info in task.options.model_fields.items():
            if info.annotation is int:
                highs = [getattr(m, "le", None) or getattr(m, "lt", None) for m in info.metadata]
                assert any(h is not None for h in highs), f"{task.name}.{name} has no upper bound"


def test_control_flags_split_on_commas_outside_brackets_and_quotes():
    from studio.task_commands import parse_control

    spec = parse_control('uniform:end=0.5,levels=2,sites=[1,2],note="a, b",word=text')
    options = {"end": 0.5, "levels": 2, "sites": [1, 2], "note": "a, b", "word": "text"}
    assert spec == {"kind": "uniform", "options": options}
