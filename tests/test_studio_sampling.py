"""The studio's sampler option, batch size and count, prompt notes and LoRA tags, on toyworld.

Oracles: a batch's images against the single runs of the same seeds (A1111's numbering); a sampler's
output against itself (same seed, same bytes); DDIM-only methods against their declared reason.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.sampler_names import A1111_NAMES
from studio.cli import app
from studio.errors import InputError, JobSpecError
from studio.jobs import Job
from studio.loras import LORA_DIRS_ENV, check_loras
from studio.metadata import JOB_KEY, PARAMETERS_KEY
from studio.model_cache import ModelCache
from studio.runner import run_job

pytestmark = pytest.mark.usefixtures("quiet_cli_env")
STEPS = 3


@pytest.fixture(scope="module")
def models():
    from studio.devices import choose_device_policy

    return ModelCache(choose_device_policy("cpu", "auto", "none"))


def test_every_sampler_gives_a_valid_image_and_the_same_bytes_twice(models):
    """Through the studio's job and runner (tests/test_samplers.py checks each against diffusers)."""
    for name, a1111 in A1111_NAMES.items():
        job = Job(prompt="a red star on the left", seed=3, steps=STEPS, sampler=a1111)
        assert job.sampler == name  # A1111's name is stored as ours
        result = run_job(job, models)
        first = result.images[0]
        assert result.job.sampler == name
        assert first.size == (64, 64) and np.asarray(first).std() > 1.0, name  # not blank, not NaN-black
        if name in ("ddim", "euler_a", "dpmpp_sde"):  # deterministic, and two that draw noise every step
            assert run_job(job, models).images[0].tobytes() == first.tobytes(), name


@pytest.mark.parametrize("task, extra", [
    ("invert", {"image": "x.png"}),
    ("mutual", {"image": "x.png"}),
    ("visctrl", {"image": "x.png", "options": {"visctrl": {"reference": "r.png"}}}),
    ("freecustom", {"options": {"freecustom": {"references": [{"image": "r.png"}]}}}),
])  # fmt: skip
def test_methods_that_replay_ddim_refuse_another_sampler_when_the_job_is_read(task, extra):
    with pytest.raises(JobSpecError, match=f"{task} needs the DDIM sampler, not 'euler_a': .*DDIM"):
        Job(task=task, sampler="Euler a", **extra)


def test_mutual_synthesis_takes_any_sampler_and_the_cli_refuses_before_any_model_loads(runner, tmp_path):
    assert Job(task="mutual", sampler="unipc").sampler == "unipc"
    (tmp_path / "x.png").write_bytes(b"not read: the job is refused first")
    args = ["invert", str(tmp_path / "x.png"), "--sampler", "UniPC", "--model", "no/such-model"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "invert needs the DDIM sampler" in result.output
    assert result.output.count("\n") == 1
    bad = runner.invoke(app, ["generate", "a", "--sampler", "heun"])
    assert bad.exit_code == 2 and "unknown sampler 'heun'" in bad.output and "DPM++ 2M Karras" in bad.output


def _chunks(path):
    with Image.open(path) as image:
        return dict(image.text), np.asarray(image.convert("RGB"), dtype=np.int16)


def test_batch_size_2_count_2_matches_four_single_runs(runner, tmp_path):
    """Seeds seed..seed+3 as A1111; each image's embedded job and A1111 text equal a single run's byte for
    byte; pixels equal the single run's within one grey level (a batched UNet call rounds differently on
    CPU); the grid carries the batch's job."""
    common = ["a blue circle", "--steps", str(STEPS), "--device", "cpu", "--sampler", "euler_a"]
    batch = runner.invoke(app, ["generate", *common, "--seed", "10", "--batch-size", "2", "--batch-count", "2",
                                "--out", str(tmp_path / "batch.png")])  # fmt: skip
    assert batch.exit_code == 0, batch.output
    names = [f"batch-{i}.png" for i in range(4)] + ["batch-grid.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    for i in range(4):
        single = tmp_path / f"single-{i}.png"
        made = runner.invoke(app, ["generate", *common, "--seed", str(10 + i), "--out", str(single)])
        assert made.exit_code == 0, made.output
        batch_text, batch_pixels = _chunks(tmp_path / f"batch-{i}.png")
        single_text, single_pixels = _chunks(single)
        assert batch_text == single_text
        assert Job.from_json(batch_text[JOB_KEY]).seed == 10 + i
        assert int(np.abs(batch_pixels - single_pixels).max()) <= 1
    grid_text, grid_pixels = _chunks(tmp_path / "batch-grid.png")
    grid_job = Job.from_json(grid_text[JOB_KEY])
    assert (grid_job.seed, grid_job.batch_size, grid_job.batch_count) == (10, 2, 2)
    assert grid_pixels.shape == (128, 128, 3)
    assert "Seed: 10," in grid_text[PARAMETERS_KEY]


def test_batch_bounds_and_tasks_without_batches(runner):
    for flags in (["--batch-size", "0"], ["--batch-size", "17"], ["--batch-count", "101"]):
        result = runner.invoke(app, ["generate", "a", *flags])
        assert result.exit_code == 2 and "batch_" in result.output, flags
    with pytest.raises(JobSpecError, match="one image per run"):
        Job(task="mutual", batch_count=2)


def test_a_truncated_prompt_says_so_on_stderr(runner, tmp_path):
    prompt = " ".join(["a red star on the left"] * 130)  # 780 words: past 8 chunks of 75 tokens
    result = runner.invoke(app, ["generate", prompt, "--steps", "1", "--seed", "1", "--device", "cpu",
                                 "--out", str(tmp_path / "t.png")])  # fmt: skip
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "needs 11 chunks" in notes[0] and "only the first 8" in notes[0]


def test_lora_tags_resolve_against_the_lora_folders(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    import torch

    folder = tmp_path / "loras"
    folder.mkdir()
    monkeypatch.setenv(LORA_DIRS_ENV, str(folder))
    with pytest.raises(InputError, match=r"'style'.*no style.safetensors.*searched: .*loras"):
        check_loras(Job(prompt="a cat <lora:style:0.8>"))
    (folder / "pickled.safetensors").write_bytes(b"\x80\x04\x95" + b"\0" * 64)  # a pickle under a safe name
    with pytest.raises(InputError, match="pickle"):
        check_loras(Job(prompt="<lora:pickled:1>"))
    save_file({"w": torch.zeros(1)}, str(folder / "style.safetensors"))
    with pytest.raises(InputError, match=r"style \(style.safetensors, scale 0.8\).*tuning"):
        check_loras(Job(prompt="a cat <lora:style:0.8>"))
    check_loras(Job(prompt=r"a cat \(literal\) without tags"))  # no tag: nothing to refuse
