"""The runner (studio/runner.py): determinism, resolved jobs, progress, cancellation, the invert task."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from pipelines.events import CancelToken
from studio.errors import JobCancelledError, JobSpecError, UnknownModelReferenceError
from studio.images import encode_png, open_image
from studio.jobs import Job
from studio.metadata import png_text_chunks
from studio.model_cache import ModelCache
from studio.reconstruction import pixel_error
from studio.runner import RunEvent, run_job

SIZE = 64


@pytest.fixture(scope="module")
def models() -> ModelCache:
    return ModelCache()


def gen_job(model: str, **changes) -> Job:
    base = Job(model=model, prompt="a red ball", seed=3, steps=2, guidance=5.0, width=SIZE, height=SIZE)
    return base.replace(**changes)


def png_of(result) -> bytes:
    return encode_png(result.images[0], png_text_chunks(result.job))


def test_same_job_and_seed_give_identical_bytes(models, tiny_sd15_dir):
    job = gen_job(str(tiny_sd15_dir))
    first, second = run_job(job, models), run_job(job, models)
    assert png_of(first) == png_of(second)
    assert models.loads == 1  # the second run reused the cached pipeline


def test_seed_changes_the_image(models, tiny_sd15_dir):
    a = run_job(gen_job(str(tiny_sd15_dir), seed=3), models).images[0]
    b = run_job(gen_job(str(tiny_sd15_dir), seed=4), models).images[0]
    assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_open_choices_are_resolved_and_reproducible(models, tiny_sd15_dir):
    job = gen_job(str(tiny_sd15_dir), seed=None, width=None, height=None)
    result = run_job(job, models)
    assert result.job.seed is not None
    assert (result.job.width, result.job.height) == result.images[0].size == (SIZE, SIZE)  # tiny default size
    again = run_job(result.job, models)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))


def test_progress_events_count_every_step(models, tiny_sd15_dir):
    events: list[RunEvent] = []
    run_job(gen_job(str(tiny_sd15_dir), steps=3), models, on_event=events.append)
    assert events[0].phase == "load"
    steps = [e for e in events if e.phase != "load"]
    assert [e.step for e in steps] == [1, 2, 3] and {e.total for e in steps} == {3}
    assert steps[-1].eta_s == 0 and steps[0].latents is not None


def test_cancel_stops_the_job(models, tiny_sd15_dir):
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelledError) as info:
        run_job(gen_job(str(tiny_sd15_dir)), models, cancel=token)
    assert info.value.exit_code == 130


def test_unused_options_are_refused_not_ignored(models, tiny_sd15_dir):
    with pytest.raises(JobSpecError, match="visctrl"):
        run_job(gen_job(str(tiny_sd15_dir), options={"visctrl": {"strength": 1.0}}), models)


def test_unknown_model_fails_before_running(models):
    with pytest.raises(UnknownModelReferenceError):
        run_job(gen_job("foo"), models)


def test_pixel_error_against_known_values():
    black, white = Image.new("RGB", (4, 4), (0, 0, 0)), Image.new("RGB", (4, 4), (255, 255, 255))
    assert pixel_error(black, white) == {"mse": 1.0, "psnr_db": 0.0}
    assert pixel_error(white, white)["mse"] == 0.0 and math.isinf(pixel_error(white, white)["psnr_db"])
    half = Image.new("RGB", (4, 4), (0, 0, 0))
    half.paste((255, 255, 255), (0, 0, 2, 4))  # half the pixels differ by 1.0 -> mse 0.5
    assert pixel_error(black, half)["mse"] == pytest.approx(0.5)


@pytest.mark.slow
def test_invert_task_reconstructs_and_measures(models, tiny_sd15_dir, tmp_path):
    source = tmp_path / "in.png"
    Image.effect_noise((56, 48), 40).convert("RGB").save(source)  # within the 64x64 working area: kept
    job = Job(task="invert", model=str(tiny_sd15_dir), image=str(source), steps=2, guidance=1.0)
    events: list[RunEvent] = []
    result = run_job(job, models, on_event=events.append)
    assert (result.job.width, result.job.height) == (56, 48) == result.images[0].size
    assert [e.step for e in events if e.phase != "load"] == [1, 2, 3, 4]  # inversion, then reconstruction
    assert {e.phase for e in events} == {"load", "invert", "denoise"}
    expected = pixel_error(open_image(source), result.images[0])
    assert result.metrics == pytest.approx(expected)


@pytest.mark.slow
def test_an_input_larger_than_the_working_size_is_brought_to_it_unless_a_size_is_asked(
    models, tiny_sd15_dir, tmp_path
):
    """The tiny model works at 64x64; a 4:3 'phone photo' of 400x300 runs at its area, aspect kept."""
    source = tmp_path / "photo.jpg"
    Image.effect_noise((400, 300), 40).convert("RGB").save(source)
    job = Job(task="invert", model=str(tiny_sd15_dir), image=str(source), steps=1, guidance=1.0)
    width, height = run_job(job, models).images[0].size
    assert width * height <= 64 * 64 and width % 8 == height % 8 == 0 and width > height
    asked = run_job(job.replace(width=400, height=296), models).images[0].size
    assert asked == (400, 296)


def test_a_size_that_cannot_fit_in_memory_is_refused_before_allocating(models, tiny_sd15_dir):
    job = Job(task="generate", model=str(tiny_sd15_dir), prompt="x", steps=1, width=8192, height=8192)
    with pytest.raises(JobSpecError, match=r"8192x8192 needs about [\d,.]+ GiB at its peak"):
        run_job(job, models)
