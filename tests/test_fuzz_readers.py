"""Property-based fuzzing of every reader of outside input: each returns a result or raises a `StudioError`
with a one-line message; nothing else (no traceback, no RecursionError, no ValueError) ever escapes.

Why hypothesis: the hand-written hostile cases (tests/test_hostile_cli.py) cover what we thought of; these
generate what we did not (odd nesting, huge numbers, stray bytes, surrogate-free unicode everywhere).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from studio.errors import StudioError
from studio.jobs import Job
from studio.masks import load_mask
from studio.metadata import job_from_a1111, read_job
from studio.safe_json import parse_json

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
job_keys = st.sampled_from(
    ["version", "task", "model", "prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height",
     "image", "options", "controls"]
)
job_like = st.dictionaries(job_keys, json_values, max_size=10)
hostile_text = st.one_of(
    st.text(max_size=300),
    st.builds(lambda n: "[" * n + "]" * n, st.integers(0, 5000)),
    st.builds(lambda n: '{"a":' * n + "1" + "}" * n, st.integers(0, 3000)),
    st.builds(lambda n: "9" * n, st.integers(1, 6000)),
    st.builds(lambda s: "\ufeff" + s, st.text(max_size=80)),
)


def one_line(exc: StudioError) -> None:
    assert str(exc) and "\n" not in str(exc)


@FUZZ
@given(hostile_text)
def test_parse_json_gives_a_value_or_one_line(text):
    try:
        parse_json(text, "input")
    except StudioError as exc:
        one_line(exc)


@FUZZ
@given(st.one_of(hostile_text, job_like.map(json.dumps), st.lists(json_values).map(json.dumps)))
def test_job_from_json_gives_a_job_or_one_line(text):
    try:
        job = Job.from_json(text)
    except StudioError as exc:
        one_line(exc)
    else:
        assert Job.from_json(job.to_json()) == job  # whatever is accepted round-trips


@FUZZ
@given(st.text(max_size=400))
def test_a1111_text_gives_a_job_or_one_line(text):
    try:
        job_from_a1111(text)
    except StudioError as exc:
        one_line(exc)


@FUZZ
@given(
    studio_job=st.one_of(st.none(), hostile_text, job_like.map(json.dumps)),
    parameters=st.one_of(st.none(), st.text(max_size=200)),
)
def test_reading_an_images_metadata_gives_a_job_or_one_line(tmp_path, studio_job, parameters):
    info = PngImagePlugin.PngInfo()
    if studio_job is not None:
        info.add_itxt("studio_job", studio_job)
    if parameters is not None:
        info.add_itxt("parameters", parameters)
    path = tmp_path / "fuzz.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    try:
        read_job(path)
    except StudioError as exc:
        one_line(exc)


@FUZZ
@given(st.binary(max_size=600))
def test_mask_bytes_give_a_mask_or_one_line(data):
    try:
        mask = load_mask(data)
    except StudioError as exc:
        one_line(exc)
    else:
        assert mask.ndim == 2 and bool(mask.any())


@FUZZ
@given(
    size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    mode=st.sampled_from(["1", "L", "LA", "RGB", "RGBA", "P", "I;16"]),
    seed=st.integers(0, 2**16),
    expected=st.one_of(st.none(), st.tuples(st.integers(1, 40), st.integers(1, 40))),
)
def test_mask_images_of_any_mode_and_size_give_a_mask_or_one_line(size, mode, seed, expected):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode if mode != "I;16" else "I").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    try:
        mask = load_mask(buffer.getvalue(), expected_size=expected)
    except StudioError as exc:
        one_line(exc)
    else:
        assert tuple(mask.shape) == (size[1], size[0])


@pytest.mark.parametrize("depth", [100_000])
def test_a_job_nested_100000_deep_is_one_line(depth, tmp_path: Path):
    with pytest.raises(StudioError) as info:
        Job.from_json('{"options": ' + "[" * depth + "]" * depth + "}")
    one_line(info.value)


def _task_option_names() -> dict[str, list[str]]:
    from studio.registry import default_registry

    registry = default_registry()
    return {name: sorted(task.options.model_fields) for name, task in registry.tasks.items()}


TASK_OPTIONS = _task_option_names()


@st.composite
def task_options(draw):
    task = draw(st.sampled_from(sorted(TASK_OPTIONS)))
    names = TASK_OPTIONS[task] + ["no_such_option"]
    options = draw(st.dictionaries(st.sampled_from(names), json_values, max_size=5))
    fields = draw(st.dictionaries(st.sampled_from(["steps", "guidance", "width", "height", "seed"]), json_values,
                                  max_size=3))
    return task, options, fields


@FUZZ
@given(task_options())
def test_option_validation_gives_a_job_or_one_line(case):
    task, options, fields = case
    image = {"image": "in.png"} if task in ("invert", "visctrl") else {}
    try:
        job = Job(task=task, options={task: options}, **image, **fields)
    except StudioError as exc:
        one_line(exc)
    else:
        assert Job.from_json(job.to_json()) == job


@FUZZ
@given(st.text(max_size=120))
def test_control_flags_give_a_spec_or_one_line(text):
    from studio.task_commands import parse_control

    try:
        spec = parse_control(text)
    except StudioError as exc:
        one_line(exc)
    else:
        assert set(spec) == {"kind", "options"}


def test_a_safetensors_header_nested_100000_deep_is_one_line(tmp_path):
    from studio.checkpoints import read_safetensors_header

    header = ('{"a":' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(StudioError, match="nested") as info:
        read_safetensors_header(path)
    one_line(info.value)
