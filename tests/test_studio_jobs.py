"""The job spec (studio/jobs.py): round trips, validation, versions, and the schema it enforces."""

from __future__ import annotations

import json
import math

import pytest

from studio.errors import JobSpecError
from studio.jobs import SCHEMA_VERSION, TASKS, Job, json_schema


def full_job() -> Job:
    return Job(
        task="mutual",
        model="owner/model",
        prompt="a red cube, left: a blue ball",
        negative_prompt="blurry",
        seed=2**40 + 3,
        steps=30,
        guidance=7.5,
        width=512,
        height=768,
        options={"mutual": {"source_prompt": "a cube", "start": 0.5, "levels": 1}},
    )


def test_json_round_trip_is_exact():
    job = full_job()
    assert Job.from_json(job.to_json()) == job
    assert Job.from_json(job.to_json(indent=None)) == job
    assert json.loads(job.to_json())["version"] == SCHEMA_VERSION


def test_defaults_are_a_valid_job():
    job = Job()
    assert Job.from_dict(job.to_dict()) == job


def test_integer_guidance_is_accepted_as_a_number():
    data = full_job().to_dict() | {"guidance": 7}
    assert Job.from_dict(data).guidance == 7.0


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"steps": 0}, "steps"),
        ({"steps": 1001}, "steps"),
        ({"steps": True}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"guidance": math.nan}, "guidance"),
        ({"guidance": -1.0}, "guidance"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"width": 65}, "multiple of 8"),
        ({"height": 0}, "height"),
        ({"model": ""}, "model"),
        ({"task": "dance"}, "task"),
        ({"prompt": None}, "prompt"),
        ({"options": {"x": object()}}, "options"),
        ({"task": "generate", "options": {}, "image": "in.png"}, "generate task takes no input image"),
        ({"options": {"mutual": {"levels": 9}}}, "options.mutual.levels must be between 1 and 3"),
        ({"options": {"mutual": {"lvls": 1}}}, "unknown option options.mutual.lvls"),
        ({"options": {"visctrl": {}}}, "does not use option(s) visctrl"),
        ({"controls": [{"kind": "dance"}]}, "unknown control kind 'dance'"),
    ],
)
def test_invalid_values_are_refused_clearly(change, fragment):
    with pytest.raises(JobSpecError) as info:
        full_job().replace(**change)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_invert_needs_an_image():
    with pytest.raises(JobSpecError, match="needs an input image"):
        Job(task="invert", prompt="")
    assert Job(task="invert", image="in.png").image == "in.png"


def test_newer_versions_are_refused_with_an_upgrade_hint():
    data = full_job().to_dict() | {"version": SCHEMA_VERSION + 1}
    with pytest.raises(JobSpecError, match="newer.*upgrade"):
        Job.from_dict(data)


@pytest.mark.parametrize("version", [None, "1", 0, 1.0])
def test_missing_or_malformed_versions_are_refused(version):
    data = full_job().to_dict()
    if version is None:
        del data["version"]
    else:
        data["version"] = version
    with pytest.raises(JobSpecError, match="version"):
        Job.from_dict(data)


def test_unknown_fields_and_bad_json_are_refused():
    with pytest.raises(JobSpecError, match="unknown field.*scheduler"):
        Job.from_dict(full_job().to_dict() | {"scheduler": "euler"})
    with pytest.raises(JobSpecError, match="not JSON"):
        Job.from_json("{not json")
    with pytest.raises(JobSpecError, match="JSON object"):
        Job.from_json("[1, 2]")
    data = full_job().to_dict()
    del data["model"]
    with pytest.raises(JobSpecError, match="missing model"):
        Job.from_dict(data)


def test_schema_describes_exactly_the_job_fields():
    schema = json_schema()
    assert set(schema["properties"]) == set(Job.model_fields)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["task"]["enum"] == list(TASKS)
    assert set(schema["required"]) <= set(schema["properties"])
    json.dumps(schema)  # serialisable as is


def _bounded_integer_fields():
    for name, prop in json_schema()["properties"].items():
        if "integer" in prop["type"] and "minimum" in prop and name != "version":
            yield name, prop


@pytest.mark.parametrize("name, prop", list(_bounded_integer_fields()))
def test_schema_bounds_are_the_enforced_bounds(name, prop):
    step = prop.get("multipleOf", 1)
    low, high = prop["minimum"], prop["maximum"] // step * step
    base = full_job().replace(task="generate", options={}) if name.startswith("batch_") else full_job()
    assert getattr(base.replace(**{name: low}), name) == low
    assert getattr(base.replace(**{name: high}), name) == high
    for bad in (low - step, high + step):
        with pytest.raises(JobSpecError):
            base.replace(**{name: bad})
