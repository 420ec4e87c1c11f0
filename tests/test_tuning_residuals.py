"""Personalized residuals and LAG: LAG off is the residuals everywhere (a LoRA on proj_out), an all-ones mask
is the same, an all-zeros mask is the base model; the rank rule gives about 0.1% of the UNet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel

from pipelines.backbone import Backbone
from pipelines.text_to_image import generate
from pipelines.tiny_models import tiny_sd15_pipeline
from pipelines.tuning.lag import lag_residuals, token_positions
from pipelines.tuning.residuals import ResidualsRecipe, block_proj_outs, residual_ranks
from studio.loras import LoraFile, applied_loras
from tests.tuning_helpers import PROMPT, trained

KW = {"num_inference_steps": 3, "guidance_scale": 5.0, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def residual_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    backbone, _ = trained(ResidualsRecipe(), lr=0.3)
    return ResidualsRecipe().save(backbone, tmp_path_factory.mktemp("res") / "res.safetensors", {})


def _run(backbone: Backbone, controls=()) -> torch.Tensor:
    return generate(backbone, PROMPT, generator=torch.Generator().manual_seed(0), controls=controls, **KW).latents


def _constant(value: float):
    return lambda block, rows, tokens: torch.full((rows, tokens), value)


def test_lag_masks_of_ones_and_zeros_are_the_residuals_everywhere_and_the_base_model(residual_file: Path):
    backbone = Backbone.from_pipeline(tiny_sd15_pipeline())
    base = _run(backbone)
    adapter = "res"
    with applied_loras(backbone.pipe, [LoraFile("res", 1.0, residual_file, adapter)]):
        everywhere = _run(backbone)
        with lag_residuals(backbone, PROMPT, "sks", "star", adapter=adapter, mask_override=_constant(1)) as c:
            ones = _run(backbone, c)
        with lag_residuals(backbone, PROMPT, "sks", "star", adapter=adapter, mask_override=_constant(0)) as c:
            zeros = _run(backbone, c)
        with lag_residuals(backbone, PROMPT, "sks", "star", adapter=adapter) as c:
            lag = _run(backbone, c)
        again = _run(backbone)  # hooks removed on exit: everywhere again
    assert (everywhere - base).abs().max() > 1e-2  # the residuals act
    torch.testing.assert_close(ones, everywhere, atol=1e-5, rtol=0)
    torch.testing.assert_close(zeros, base, atol=1e-5, rtol=0)
    torch.testing.assert_close(again, everywhere, atol=0, rtol=0)
    assert (lag - everywhere).abs().max() > 1e-3 and (lag - base).abs().max() > 1e-3  # a real partial mask


def test_residuals_file_loads_in_stock_diffusers_as_the_studio_applies_it(residual_file: Path):
    stock = tiny_sd15_pipeline()
    stock.set_progress_bar_config(disable=True)
    stock.load_lora_weights(str(residual_file.parent), weight_name=residual_file.name)
    theirs = stock(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", **KW).images
    backbone = Backbone.from_pipeline(tiny_sd15_pipeline())
    with applied_loras(backbone.pipe, [LoraFile("res", 1.0, residual_file)]):
        ours = _run(backbone)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_rank_rule_is_five_percent_of_channels_about_a_tenth_of_a_percent_of_the_unet():
    from toyworld import toyworld_path

    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(toyworld_path() / "unet"))
    ranks = residual_ranks(unet, 0.05)
    channels = block_proj_outs(unet)
    assert ranks == {name: max(1, round(0.05 * c)) for name, c in channels.items()}
    residual = sum(2 * ranks[n] * c for n, c in channels.items())  # A (r x m) + B (m x r), 1x1 convs
    fraction = residual / sum(p.numel() for p in unet.parameters())
    assert 0.0005 < fraction < 0.002, fraction  # the paper's ~0.1 % (SD1.x: 1.24 M of 860 M)


def test_token_positions_find_identifier_and_class():
    tokenizer = tiny_sd15_pipeline().tokenizer
    ids = tokenizer(PROMPT).input_ids
    positions = token_positions(tokenizer, PROMPT, ["sks", "star"])
    words = tokenizer.convert_ids_to_tokens([ids[p] for p in positions])
    assert "".join(words).replace("</w>", "") == "sksstar"
    with pytest.raises(ValueError, match="LAG needs the prompt to contain 'moon'"):
        token_positions(tokenizer, PROMPT, ["moon"])
