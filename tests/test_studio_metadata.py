"""PNG metadata (studio/metadata.py): our job chunk, A1111 `parameters` (read by sd-parsers through
studio/foreign_metadata.py), and path privacy."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from studio.errors import MetadataError
from studio.images import save_png
from studio.jobs import Job
from studio.metadata import (
    JOB_KEY,
    PARAMETERS_KEY,
    a1111_parameters,
    job_from_a1111,
    png_text_chunks,
    portable_path,
    read_job,
)

# As A1111 1.9 writes it: a multi-line prompt with a LoRA tag and weights, a multi-line negative prompt, and
# a settings line with a quoted value that itself contains commas and colons.
A1111_TEXT = (
    "masterpiece, best quality, a photo of a cat wearing a hat, (detailed fur:1.2)\n"
    "<lora:catstyle:0.8>\n"
    "Negative prompt: lowres, bad anatomy, blurry\n"
    "worst quality\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 3141592653, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.4, Clip skip: 2, "
    'Hires upscale: 2, Hires upscaler: Latent, Lora hashes: "catstyle: 0123456789ab, other: ffee", Version: v1.9.4'
)


def test_realistic_a1111_text_becomes_a_job_with_notes():
    job, notes = job_from_a1111(A1111_TEXT)
    assert job.prompt == (
        "masterpiece, best quality, a photo of a cat wearing a hat, (detailed fur:1.2)\n<lora:catstyle:0.8>"
    )
    assert job.negative_prompt == "lowres, bad anatomy, blurry\nworst quality"
    assert (job.steps, job.guidance, job.seed, job.width, job.height) == (30, 7.5, 3141592653, 512, 768)
    assert job.sampler == "dpmpp_2m_karras"  # `Sampler: DPM++ 2M, Schedule type: Karras`
    assert job.model == "v1-5-pruned-emaonly"  # in no model folder: kept as named (running it needs --model)
    assert any("Hires upscale" in note and "Denoising strength" in note for note in notes)


def test_a1111_text_without_a_settings_line_is_a_clear_error():
    with pytest.raises(MetadataError, match="Steps"):
        job_from_a1111("just a prompt: with a colon\nNegative prompt: ugly")


def test_a1111_bad_size_is_a_clear_error():
    with pytest.raises(MetadataError, match="Size"):
        job_from_a1111("p\nSteps: 20, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: big")


def test_a1111_unknown_sampler_is_a_note():
    job, notes = job_from_a1111("p\nSteps: 20, Sampler: Heun, CFG scale: 7, Seed: 1, Size: 64x64")
    assert job.sampler == "ddim" and any("Heun" in note for note in notes)


def test_our_parameters_text_parses_back_to_the_same_job():
    job = Job(
        model="owner/model-v2",
        prompt="a cat, on a mat: cosy",
        negative_prompt="dark, noisy",
        seed=9,
        steps=12,
        guidance=6.5,
        width=576,
        height=320,
        sampler="euler_a",
    )
    text = a1111_parameters(job)
    assert "Sampler: Euler a," in text
    back, notes = job_from_a1111(text)
    assert back == job
    assert notes == []


def test_job_chunk_round_trip_through_a_png(tmp_path):
    job = Job(model="owner/model", prompt="ünïcödé ✓", seed=5, steps=3, guidance=4.0, width=64, height=64)
    path = save_png(Image.new("RGB", (64, 64)), tmp_path / "out.png", png_text_chunks(job))
    found = read_job(path)
    assert found.source == "studio" and found.job == job and found.notes == ()


def test_a1111_only_png_is_read_as_a1111(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, A1111_TEXT.encode("latin-1", "replace").decode("latin-1"))
    path = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    found = read_job(path)
    assert found.source == "a1111"
    assert found.job.seed == 3141592653 and found.notes


def test_png_without_metadata_is_a_clear_error(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(MetadataError, match="plain.png"):
        read_job(path)


def test_portable_path_rules(tmp_path):
    cwd, home = tmp_path / "work", tmp_path / "home" / "alice"
    assert portable_path(str(cwd / "models" / "m"), cwd=cwd, home=home) == "models/m"
    assert portable_path(str(home / "ckpt" / "x.safetensors"), cwd=cwd, home=home) == "~/ckpt/x.safetensors"
    assert portable_path("/srv/secret/alice/model", cwd=cwd, home=home) == "model"
    assert portable_path("relative/model", cwd=cwd, home=home) == "relative/model"
    assert portable_path("owner/hub-id", cwd=cwd, home=home) == "owner/hub-id"
    assert portable_path("toyworld", cwd=cwd, home=home) == "toyworld"


def test_embedded_metadata_holds_no_absolute_paths(tmp_path):
    secret = Path("/srv/users/alice-private")
    job = Job(task="invert", model=str(secret / "models" / "sd15"), image=str(secret / "photo.png"), steps=2)
    chunks = png_text_chunks(job)
    for text in chunks.values():
        assert str(secret) not in text and "alice-private" not in text
    embedded = Job.from_json(chunks[JOB_KEY])
    assert (embedded.model, embedded.image) == ("sd15", "photo.png")
