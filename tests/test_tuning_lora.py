"""The trainer and the LoRA recipe: files that stock diffusers and the studio load alike (kohya keys too), a
resumed run bit-identical to an uninterrupted one, and the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

from pipelines.backbone import Backbone
from pipelines.events import Cancelled, CancelToken
from pipelines.text_to_image import generate
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline
from pipelines.tuning.lora import LoraRecipe
from pipelines.tuning.recipe import trainable_parameters
from studio.loras import LoraFile, applied_loras
from tests.tuning_helpers import PROMPT, trained

KW = {"num_inference_steps": 3, "guidance_scale": 5.0, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    backbone, _ = trained(LoraRecipe())
    path = tmp_path_factory.mktemp("lora") / "sks.safetensors"
    return LoraRecipe().save(backbone, path, {})


PIPES = {"sd15": tiny_sd15_pipeline, "sdxl": tiny_sdxl_pipeline}


def _studio(path: Path, family: str = "sd15") -> torch.Tensor:
    backbone = Backbone.from_pipeline(PIPES[family]())
    with applied_loras(backbone.pipe, [LoraFile(path.stem, 1.0, path)]):
        return generate(backbone, PROMPT, generator=torch.Generator().manual_seed(0), **KW).latents


def test_trained_lora_loads_in_stock_diffusers_and_the_studio_alike(lora_file: Path):
    stock_pipe = tiny_sd15_pipeline()
    stock_pipe.set_progress_bar_config(disable=True)
    base = stock_pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", **KW).images
    stock_pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    stock = stock_pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", **KW).images
    ours = _studio(lora_file)
    assert (stock - base).abs().max() > 1e-3  # the trained LoRA really acts
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_sdxl_lora_loads_in_stock_diffusers_and_the_studio_alike(tmp_path: Path):
    backbone, _ = trained(LoraRecipe(), family="sdxl")
    path = LoraRecipe().save(backbone, tmp_path / "xl.safetensors", {})
    stock_pipe = tiny_sdxl_pipeline()
    stock_pipe.set_progress_bar_config(disable=True)
    stock_pipe.load_lora_weights(str(tmp_path), weight_name=path.name)
    stock = stock_pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", **KW).images
    torch.testing.assert_close(_studio(path, "sdxl"), stock, atol=1e-5, rtol=0)


def _kohya_keys(path: Path, target: Path) -> Path:
    """The same weights under kohya/A1111 names (lora_unet_*.lora_down/lora_up, .alpha = rank: scale 1)."""
    tensors = safetensors.torch.load_file(str(path))
    out = {}
    for key, value in tensors.items():
        module, kind = key.removeprefix("unet.").split(".lora.")  # diffusers' "lora.down" / "lora.up" names
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.lora_{kind}"] = value
        if kind.startswith("down"):
            out[f"{name}.alpha"] = torch.tensor(float(value.shape[0]))
    safetensors.torch.save_file(out, str(target))
    return target


def test_kohya_keyed_file_of_the_same_weights_gives_the_same_image(lora_file: Path, tmp_path: Path):
    kohya = _kohya_keys(lora_file, tmp_path / "kohya.safetensors")
    torch.testing.assert_close(_studio(kohya), _studio(lora_file), atol=1e-5, rtol=0)


def _weights(backbone: Backbone) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainable_parameters(backbone).items()}


@pytest.mark.slow
def test_resume_after_a_kill_is_bit_identical(tmp_path: Path):
    whole, whole_result = trained(LoraRecipe(), steps=4, checkpoints=tmp_path / "whole")

    def die_after_three(report) -> None:  # the process dies after step 3; the last checkpoint is step 3
        if report.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trained(LoraRecipe(), steps=4, checkpoints=tmp_path / "killed", on_step=die_after_three)
    resumed, result = trained(LoraRecipe(), steps=4, checkpoints=tmp_path / "killed")
    assert result.resumed_from == 3
    assert result.losses == whole_result.losses
    ours, theirs = _weights(resumed), _weights(whole)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_cancel_saves_a_checkpoint_at_the_step_boundary(tmp_path: Path):
    token = CancelToken()

    def stop(report) -> None:
        if report.step == 1:
            token.cancel()

    with pytest.raises(Cancelled):
        trained(LoraRecipe(), steps=3, checkpoints=tmp_path, on_step=stop, cancel=token)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("step-")] == ["step-000001"]


def test_checkpoint_of_another_run_is_refused(tmp_path: Path):
    from pipelines.tuning.trainer import CheckpointMismatchError

    trained(LoraRecipe(), steps=2, checkpoints=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="other images, recipe or settings"):
        trained(LoraRecipe(rank=2), steps=3, checkpoints=tmp_path)
