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
from studio.loras import LORA_DIRS_ENV, resolved_loras
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


def _lora_file(folder):
    """A random rank-4 LoRA on toyworld's attention projections (peft, saved as diffusers saves one)."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    from toyworld import load_toyworld_pipeline

    donor = load_toyworld_pipeline().unet
    donor.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in donor.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    layers = get_peft_model_state_dict(donor)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, weight_name="style.safetensors")
    return layers


def _merged_toyworld(layers, scale):
    """Toyworld with W + scale * B @ A written into each projection by hand (lora_alpha = r: factor 1)."""
    import torch

    from toyworld import load_toyworld_pipeline

    pipe = load_toyworld_pipeline()
    modules = dict(pipe.unet.named_modules())
    with torch.no_grad():
        for key, down in layers.items():
            if key.endswith("lora_A.weight"):
                module = modules[key.removesuffix(".lora_A.weight")]
                up = layers[key.replace("lora_A", "lora_B")]
                module.weight += scale * up @ down  # (out, r) @ (r, in)
    return pipe


def test_a_lora_tag_loads_the_lora_for_that_run_only(tmp_path, monkeypatch, models):
    """Oracle: the same generation on toyworld with the LoRA merged into the weights by hand."""
    import torch

    from pipelines.backbone import Backbone
    from pipelines.text_to_image import generate

    folder = tmp_path / "loras"
    folder.mkdir()
    layers = _lora_file(folder)
    monkeypatch.setenv(LORA_DIRS_ENV, str(folder))
    prompt = "a red star on the left <lora:style:0.5>"
    plain = run_job(Job(prompt="a red star on the left", seed=4, steps=STEPS), models).images[0]
    tagged = run_job(Job(prompt=prompt, seed=4, steps=STEPS), models).images[0]
    after = run_job(Job(prompt="a red star on the left", seed=4, steps=STEPS), models).images[0]
    oracle = generate(
        Backbone.from_pipeline(_merged_toyworld(layers, 0.5)),
        prompt,
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(4),
    ).images[0]
    diff = lambda a, b: int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())  # noqa: E731
    assert diff(tagged, plain) > 20  # the LoRA acts
    assert diff(tagged, oracle) <= 2  # as the merged weights do (merging rounds differently)
    assert after.tobytes() == plain.tobytes()  # and is gone from the cached model afterwards


def test_lora_tags_resolve_against_the_lora_folders(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "loras"
    folder.mkdir()
    monkeypatch.setenv(LORA_DIRS_ENV, str(folder))
    with pytest.raises(InputError, match=r"'style'.*no style.safetensors.*searched: .*loras"):
        resolved_loras(Job(prompt="a cat <lora:style:0.8>"))
    (folder / "pickled.safetensors").write_bytes(b"\x80\x04\x95" + b"\0" * 64)  # a pickle under a safe name
    with pytest.raises(InputError, match="pickle"):
        resolved_loras(Job(prompt="<lora:pickled:1>"))
    with pytest.raises(InputError, match="without folders"):
        resolved_loras(Job(prompt="<lora:../style:1>"))
    save_file({"w": torch.zeros(1)}, str(folder / "style.safetensors"))
    (found,) = resolved_loras(Job(prompt="a cat <lora:style:0.8>"))
    assert (found.name, found.scale, found.path) == ("style", 0.8, folder / "style.safetensors")
    assert resolved_loras(Job(prompt=r"a cat \(literal\) without tags")) == []
