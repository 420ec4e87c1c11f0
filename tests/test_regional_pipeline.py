"""Regional generation (RAG) on the tiny SD1.5 and SDXL models: one region that is the whole image with the
global prompt is plain generation (the oracle: `generate` with the same seed), and bad regions are refused."""

from __future__ import annotations

import pytest
import torch

from pipelines.backbone import Backbone
from pipelines.hard_binding import binding_steps
from pipelines.region_boxes import MAX_REGIONS
from pipelines.regional_prompting import regional
from pipelines.regions import Region, place
from pipelines.text_to_image import generate
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline

SIZE = {"width": 64, "height": 64, "num_inference_steps": 4}


@pytest.fixture(scope="module")
def backbones():
    return {"sd15": Backbone.from_pipeline(tiny_sd15_pipeline()), "sdxl": Backbone.from_pipeline(tiny_sdxl_pipeline())}


@pytest.mark.parametrize(("family", "sampler"), [("sd15", "ddim"), ("sdxl", "ddim"), ("sd15", "euler_a")])
def test_one_whole_image_region_with_the_global_prompt_is_plain_generation(backbones, family, sampler):
    backbone = backbones[family]
    prompt = "a red ball"
    want = generate(backbone, prompt, sampler=sampler, generator=torch.Generator().manual_seed(4), **SIZE)
    got = regional(
        backbone, prompt, [Region(prompt, box=(0, 0, 1, 1))], binding=0.5, sampler=sampler,
        generator=torch.Generator().manual_seed(4), **SIZE,
    )  # fmt: skip
    torch.testing.assert_close(got.latents, want.latents, atol=1e-5, rtol=0)


def test_regions_change_the_image_where_they_are(backbones):
    backbone = backbones["sd15"]
    plain = generate(backbone, "a ball", generator=torch.Generator().manual_seed(2), **SIZE)
    got = regional(
        backbone, "a ball", [Region("a blue cube", box=(0.5, 0, 0.5, 1))], delta=0.8,
        generator=torch.Generator().manual_seed(2), **SIZE,
    )  # fmt: skip
    changed = (got.latents - plain.latents).abs().mean(dim=(0, 1))  # (h, w)
    assert changed[:, 16:].mean() > 0.0


def test_the_binding_prompt_drives_the_regions_own_run_and_only_it(backbones):
    """Oracle: with soft refinement off, a region whose binding prompt is B is the region whose prompt is B
    (only hard binding reads it); with binding off too, the binding prompt changes nothing."""
    backbone = backbones["sd15"]

    def run(region: Region, binding: float):
        return regional(
            backbone, "a ball", [region], delta=0.0, binding=binding, generator=torch.Generator().manual_seed(5),
            **SIZE,
        ).latents  # fmt: skip

    box = (0.5, 0, 0.5, 1)
    split = Region("a red ball on the right", box=box, binding_prompt="a blue cube")
    plain = Region("a red ball on the right", box=box)
    torch.testing.assert_close(run(split, 0.5), run(Region("a blue cube", box=box), 0.5), atol=1e-6, rtol=0)
    assert not torch.allclose(run(split, 0.5), run(plain, 0.5), atol=1e-4)
    torch.testing.assert_close(run(split, 0.0), run(plain, 0.0), atol=1e-6, rtol=0)


def test_binding_rounds_the_official_share():
    assert binding_steps(2 / 20, 20) == 2 and binding_steps(2 / 20, 25) == 2 and binding_steps(0.0, 25) == 0


BAD = {
    "outside": ([Region("a", box=(0.6, 0, 0.5, 1))], "lies outside the image"),
    "negative": ([Region("a", box=(-0.1, 0, 0.5, 1))], "lies outside the image"),
    "zero-area": ([Region("a", box=(0.2, 0.2, 0, 0.3))], "zero area"),
    "no-cell": ([Region("a", box=(0.5, 0.5, 0.01, 0.01))], "covers no latent cell"),
    "empty-prompt": ([Region("  ", box=(0, 0, 1, 1))], "region prompt is empty"),
    "empty-binding-prompt": ([Region("a", box=(0, 0, 1, 1), binding_prompt=" ")], "binding prompt is empty"),
    "too-many": ([Region("a", box=(0, 0, 1, 1))] * (MAX_REGIONS + 1), f"at most {MAX_REGIONS}"),
    "none": ([], "at least one region"),
    "empty-mask": ([Region("a", mask=torch.zeros(8, 8))], "covers no latent cell"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_regions_are_refused_clearly(case):
    regions, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        place(regions, (32, 32))


def test_a_box_owns_the_cells_between_its_rounded_edges_and_a_mask_its_half_covered_cells():
    (box,) = place([Region("a", box=(0.25, 0.5, 0.5, 0.5))], (8, 8))
    assert (box.top, box.left, box.bottom, box.right) == (4, 2, 8, 6) and box.cells.sum() == 16
    mask = torch.zeros(16, 16)
    mask[0:4, 8:16] = 1
    (region,) = place([Region("a", mask=mask)], (8, 8))
    assert (region.top, region.left, region.bottom, region.right) == (0, 4, 2, 8) and region.cells.sum() == 8


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_repainting_keeps_every_pixel_outside_the_region_byte_identical(backbones, family):
    import numpy as np

    from pipelines.repainting import repaint

    backbone = backbones[family]
    original = generate(backbone, "a ball", generator=torch.Generator().manual_seed(3), **SIZE).images[0]
    mask = torch.zeros(64, 64)
    mask[10:40, 5:30] = 1
    for region in (Region("a blue cube", box=(0.5, 0.25, 0.5, 0.5)), Region("a blue cube", mask=mask)):
        out = repaint(
            backbone, original, region, prompt="a ball", num_inference_steps=4,
            generator=torch.Generator().manual_seed(3),
        ).images[0]  # fmt: skip
        before, after = np.asarray(original), np.asarray(out)
        inside = np.zeros((64, 64), bool)
        if region.box is not None:
            inside[16:48, 32:64] = True
        else:
            inside = mask.numpy() > 0
        assert np.array_equal(after[~inside], before[~inside])
        assert not np.array_equal(after[inside], before[inside])


def test_repainting_needs_ddim_and_a_generator(backbones):
    from PIL import Image

    from pipelines.repainting import repaint

    image = Image.new("RGB", (64, 64))
    with pytest.raises(ValueError, match="DDIM"):
        repaint(backbones["sd15"], image, Region("a", box=(0, 0, 1, 1)), sampler="euler", generator=torch.Generator())
    with pytest.raises(ValueError, match="Generator"):
        repaint(backbones["sd15"], image, Region("a", box=(0, 0, 1, 1)))


def test_hard_binding_pastes_each_regions_latents_on_its_cells_later_regions_winning_overlaps():
    from dataclasses import replace

    from pipelines.hard_binding import HardBinding

    first, second = place([Region("a", box=(0, 0, 0.75, 0.5)), Region("b", mask=torch.eye(8))], (8, 8))
    runs = [
        [torch.full((1, 4, r.bottom - r.top, r.right - r.left), float(k + 1))] for k, r in enumerate((first, second))
    ]
    end = _end(torch.zeros(1, 4, 8, 8))
    out = HardBinding([first, second], runs)(end)
    want = torch.zeros(8, 8)
    want[0:4, 0:6] = 1
    want[torch.eye(8) > 0] = 2
    assert torch.equal(out[0, 0], want) and torch.equal(out[0, 3], want)
    assert HardBinding([first, second], runs)(replace(end, index=1)) is None  # past the bound steps


def _end(latents):
    from attention_processors import BatchLayout
    from pipelines.batch_plan import BatchPlan
    from pipelines.hooks import StepEnd

    plan = BatchPlan.of(BatchLayout.without_cfg(["target"]))
    return StepEnd("denoise", 0, 2, 999, (999, 1), latents, latents, latents, latents, plan, None)
