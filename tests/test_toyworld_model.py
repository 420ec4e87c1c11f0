"""The bundled toyworld model: layout, offline loading, clear errors for bad folders, trainer safety.

A damaged toyworld folder is loaded through the studio's one loader (studio/loading.py), the path every
model reference takes, and each failure must name the file that is wrong.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from studio.devices import DevicePolicy
from studio.errors import StudioError, UnknownModelReferenceError
from studio.model_cache import ModelCache
from toyworld import MODEL_ENV, load_toyworld_pipeline, toyworld_path
from toyworld.metrics.clip_scores import load_toy_clip
from toyworld.train.chain import main as train_main

MODEL = toyworld_path()


def test_bundled_layout_is_safetensors_only_and_small():
    files = [p for p in MODEL.rglob("*") if p.is_file() and "concepts" not in p.parts]
    names = {p.relative_to(MODEL).as_posix() for p in files}
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "image_encoder", "feature_extractor"):
        assert any(n.startswith(sub + "/") for n in names), sub
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    assert sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file()) <= 50 * 1024 * 1024
    index = json.loads((MODEL / "model_index.json").read_text())
    assert index["requires_safety_checker"] is False and index["safety_checker"] == [None, None]


def test_loads_offline_with_the_real_classes():
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    pipe = StableDiffusionPipeline.from_pretrained(str(MODEL), local_files_only=True)
    assert isinstance(pipe.unet, UNet2DConditionModel) and isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.tokenizer, CLIPTokenizer)
    assert isinstance(pipe.image_encoder, CLIPVisionModelWithProjection)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    cfg = pipe.scheduler.config
    assert (cfg.beta_schedule, cfg.beta_start, cfg.beta_end, cfg.num_train_timesteps) == ("scaled_linear", 0.00085,
                                                                                         0.012, 1000)
    assert cfg.clip_sample is False and cfg.set_alpha_to_one is False and cfg.steps_offset == 1
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert pipe.tokenizer.model_max_length == 77 == pipe.text_encoder.config.max_position_embeddings
    assert 2 ** (len(pipe.vae.config.block_out_channels) - 1) == 4
    # Cross-attention at two or more resolutions, self- then cross-attention per transformer block.
    cross = {n.split(".attentions")[0] for n, _ in pipe.unet.named_modules() if n.endswith("attn2")}
    assert len([n for n in cross if n.startswith(("down_blocks", "up_blocks"))]) >= 4
    assert any("mid" in n for n in cross)
    out = pipe("a red circle in the center", num_inference_steps=2, height=64, width=64,
               generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (1, 64, 64, 3)


def test_loader_helper_and_clip_load():
    pipe = load_toyworld_pipeline()
    assert pipe.image_encoder.config.image_size == 64
    clip = load_toy_clip(MODEL)
    assert clip.config.projection_dim == pipe.image_encoder.config.projection_dim


@pytest.fixture
def model_copy(tmp_path):
    dst = tmp_path / "toyworld"
    shutil.copytree(MODEL, dst, ignore=shutil.ignore_patterns("concepts"))
    return dst


def _studio_load(folder):
    return ModelCache(DevicePolicy(device="cpu")).get(str(folder))


def test_missing_file_is_named(model_copy):
    (model_copy / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(StudioError, match="diffusion_pytorch_model.safetensors") as info:
        _studio_load(model_copy)
    assert "unet" in str(info.value) and "\n" not in str(info.value)


def test_truncated_weights_are_named(model_copy):
    f = model_copy / "vae" / "diffusion_pytorch_model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(StudioError, match="vae/diffusion_pytorch_model.safetensors.*truncated"):
        _studio_load(model_copy)


def test_garbage_weights_are_named(model_copy):
    (model_copy / "text_encoder" / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(StudioError, match="text_encoder/model.safetensors"):
        _studio_load(model_copy)


def test_corrupt_config_is_named(model_copy):
    (model_copy / "unet" / "config.json").write_text("{not json")
    with pytest.raises(StudioError, match="unet/config.json"):
        _studio_load(model_copy)


def test_missing_bundled_folder_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "does-not-exist"))
    with pytest.raises(UnknownModelReferenceError, match="'toyworld' is missing its weights .*does-not-exist"):
        _studio_load("toyworld")


def test_the_environment_setting_points_the_toyworld_name_at_another_folder(monkeypatch, model_copy):
    monkeypatch.setenv(MODEL_ENV, str(model_copy))
    assert toyworld_path() == model_copy
    assert ModelCache().resolve("toyworld").location == str(model_copy.resolve())


def test_trainer_refuses_to_overwrite_a_model(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(SystemExit, match="--overwrite"):
        train_main(["--out", str(tmp_path)])
    assert (tmp_path / "model_index.json").read_text() == "{}"


@pytest.mark.slow
def test_tiny_training_run_writes_a_loadable_model(tmp_path):
    """The whole chain at toy scale: CLIP -> VAE -> UNet, then the diffusers layout and a report."""
    out = tmp_path / "tw"
    args = ["--out", str(out), "--scenes", "64", "--clip-steps", "2", "--clip-batch", "16", "--vae-steps", "2",
            "--vae-batch", "4", "--unet-steps", "2", "--unet-batch", "4", "--decoder-steps", "2", "--text-steps", "2",
            "--text-batch", "8"]
    report = train_main(args)
    assert report["status"] == "done"
    assert report["unet"]["steps"] == 2 and report["decoder"]["steps"] == 2 and report["vae"]["scaling_factor"] > 0
    saved = json.loads((out / "training_report.json").read_text())
    assert saved["status"] == "done" and "loss_first" in saved["clip"]
    pipe = _studio_load(out)
    assert load_toy_clip(out).config.projection_dim == pipe.image_encoder.config.projection_dim
    assert pipe.vae.config.scaling_factor == pytest.approx(report["vae"]["scaling_factor"])


TINY_CHAIN = ["--scenes", "64", "--clip-steps", "2", "--clip-batch", "16", "--vae-steps", "2", "--vae-batch", "4",
              "--unet-steps", "3", "--unet-batch", "4", "--text-steps", "2", "--text-batch", "8"]


@pytest.mark.slow
def test_resuming_after_the_vae_stage_gives_the_same_unet_as_the_whole_chain(tmp_path):
    from safetensors.torch import load_file

    full = train_main(["--out", str(tmp_path / "full"), *TINY_CHAIN, "--decoder-steps", "0"])
    resumed = train_main(["--out", str(tmp_path / "resumed"), *TINY_CHAIN, "--decoder-steps", "0",
                          "--resume-after-vae", str(tmp_path / "full")])
    assert resumed["resumed_after_vae_from"] == str(tmp_path / "full")
    assert resumed["unet"]["loss_curve"] == full["unet"]["loss_curve"]
    for component, file in (("unet", "diffusion_pytorch_model.safetensors"), ("text_encoder", "model.safetensors")):
        a = load_file(str(tmp_path / "full" / component / file))
        b = load_file(str(tmp_path / "resumed" / component / file))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), component


def _text_tower_change(run) -> float:
    """Largest weight change between the conditioning text encoder and clip/'s contrastive text tower."""
    from safetensors.torch import load_file

    text = load_file(str(run / "text_encoder" / "model.safetensors"))
    clip = load_file(str(run / "clip" / "model.safetensors"))
    return max((text[k] - clip[f"text_model.{k}"]).abs().max().item() for k in text)


@pytest.mark.slow
def test_text_encoder_is_fine_tuned_with_the_unet_and_clip_is_kept(tmp_path):
    """--text-lr > 0 moves text_encoder/ away from clip/'s tower; --text-lr 0 leaves it bit-identical."""
    base = ["--out", str(tmp_path / "tuned"), *TINY_CHAIN, "--decoder-steps", "0", "--text-lr", "1e-4"]
    train_main(base)
    assert _text_tower_change(tmp_path / "tuned") > 0.0  # three warm-up steps move it only slightly
    train_main(["--out", str(tmp_path / "frozen"), *TINY_CHAIN, "--decoder-steps", "0", "--text-lr", "0",
                "--text-steps", "0", "--resume-after-vae", str(tmp_path / "tuned")])
    assert _text_tower_change(tmp_path / "frozen") == 0.0


def test_resume_refuses_a_finished_run_or_other_settings(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    report = {"args": {"seed": 0, "scenes": 64}, "clip": {}, "vae": {"scaling_factor": 1.0}, "decoder": {}}
    (run / "training_report.json").write_text(json.dumps(report))
    with pytest.raises(SystemExit, match="decoder"):
        train_main(["--out", str(tmp_path / "out"), *TINY_CHAIN, "--resume-after-vae", str(run)])
    del report["decoder"]
    (run / "training_report.json").write_text(json.dumps(report))
    with pytest.raises(SystemExit, match="clip_steps"):
        train_main(["--out", str(tmp_path / "out"), *TINY_CHAIN, "--resume-after-vae", str(run)])
    with pytest.raises(SystemExit, match="no training_report"):
        train_main(["--out", str(tmp_path / "out2"), *TINY_CHAIN, "--resume-after-vae", str(tmp_path)])


def test_training_noise_adds_a_per_channel_offset():
    """The offset shifts whole channels (background brightness), on top of unit-variance white noise."""
    from toyworld.train.unet import NOISE_OFFSET, draw_training_noise

    noise = draw_training_noise(torch.Size([256, 4, 16, 16]), torch.Generator().manual_seed(0))  # (B, C, h, w)
    per_channel_mean = noise.mean(dim=(2, 3))  # (B, C)
    white_mean_std = 1 / 16  # std of the mean of 256 unit normals
    assert per_channel_mean.std().item() == pytest.approx((NOISE_OFFSET**2 + white_mean_std**2) ** 0.5, rel=0.1)
    assert (noise - noise.mean(dim=(2, 3), keepdim=True)).std().item() == pytest.approx(1.0, abs=0.02)
