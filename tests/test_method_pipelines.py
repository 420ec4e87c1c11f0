"""Mutual self-attention, VisCtrl and FreeCustom pipelines on the tiny models: invariances and contracts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.backbone import Backbone
from pipelines.customize import Reference, freecustom
from pipelines.mutual import mutual_edit
from pipelines.text_to_image import generate
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline
from pipelines.visctrl import VisCtrlPass, visctrl

FIRST, LATER = VisCtrlPass(4, 6.0, 0.25), VisCtrlPass(2, 4.0, 0.5)  # the official 10/5 steps, shortened


@pytest.fixture(scope="module")
def sd15() -> Backbone:
    return Backbone.from_pipeline(tiny_sd15_pipeline())


@pytest.fixture(scope="module")
def sdxl() -> Backbone:
    return Backbone.from_pipeline(tiny_sdxl_pipeline())


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def box(h: int, w: int, top: int, left: int, bh: int, bw: int) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[top : top + bh, left : left + bw] = 1
    return m


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_mutual_with_source_equal_to_target_is_plain_generation(family, request):
    backbone = request.getfixturevalue(family)
    kw = dict(num_inference_steps=4, guidance_scale=7.5, width=64, height=96)  # non-square
    plain = generate(backbone, "a red star", generator=seeded(3), **kw)
    same = mutual_edit(backbone, "a red star", source_prompt="a red star", generator=seeded(3), **kw)
    torch.testing.assert_close(same.latents, plain.latents, atol=1e-4, rtol=0)


def test_mutual_real_image_restores_processors_and_batches(sd15):
    before = sd15.unet.attn_processors
    source = generate(sd15, "a cat", num_inference_steps=2, width=64, height=64, generator=seeded(0)).images[0]
    out = mutual_edit(sd15, ["a dog", "a blue dog"], source_image=source, num_inference_steps=4)
    single = mutual_edit(sd15, "a blue dog", source_image=source, num_inference_steps=4)
    torch.testing.assert_close(out.latents[1:], single.latents, atol=1e-4, rtol=0)
    assert sd15.unet.attn_processors == before


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_freecustom_without_effective_references_is_plain_generation(family, request):
    backbone = request.getfixturevalue(family)
    kw = dict(num_inference_steps=3, guidance_scale=7.5, width=64, height=64)
    plain = generate(backbone, "a hat", generator=[seeded(1)], **kw)
    none = freecustom(backbone, "a hat", [], generator=[seeded(1)], **kw)
    torch.testing.assert_close(none.latents, plain.latents, atol=0, rtol=0)
    empty = freecustom(
        backbone, "a hat", [Reference(plain.images[0], torch.zeros(64, 64), "a cat")], generator=[seeded(1)], **kw
    )
    torch.testing.assert_close(empty.latents, plain.latents, atol=1e-5, rtol=0)


def test_freecustom_batch_equals_single_and_references_act(sd15):
    kw = dict(num_inference_steps=3, width=64, height=64)
    ref = generate(sd15, "a cat", generator=seeded(5), **kw).images[0]
    refs = [Reference(ref, box(64, 64, 8, 8, 30, 30), "a cat"), Reference(ref, box(64, 64, 20, 30, 30, 30), "a hat")]
    both = freecustom(sd15, ["a dog", "a hat"], refs, generator=[seeded(1), seeded(2)], **kw)
    single = freecustom(sd15, "a hat", refs, generator=[seeded(2)], **kw)
    torch.testing.assert_close(both.latents[1:], single.latents, atol=1e-4, rtol=0)
    plain = generate(sd15, "a hat", guidance_scale=7.5, generator=[seeded(2)], **kw)
    assert (plain.latents - single.latents).abs().max() > 1e-2


def test_freecustom_refuses_more_references_than_memory_allows(sd15):
    ref = Reference(
        generate(sd15, "x", num_inference_steps=1, width=64, height=64, generator=seeded(0)).images[0],
        torch.ones(64, 64),
        "x",
    )
    with pytest.raises(ValueError, match=r"GiB \(estimate\)"):
        freecustom(
            sd15,
            "a",
            [ref] * 3,
            num_inference_steps=2,
            width=64,
            height=64,
            generator=seeded(0),
            max_memory_bytes=1024,
        )


def test_visctrl_keeps_pixels_outside_the_mask_and_iterations_accumulate(sd15):
    kw = dict(num_inference_steps=2, generator=seeded(1))
    reference = generate(sd15, "a red star", width=64, height=64, **kw).images[0]
    target = generate(sd15, "a blue circle", width=96, height=64, **kw).images[0]
    ref_mask, tgt_mask = box(64, 64, 10, 20, 30, 30), box(64, 96, 20, 30, 30, 40)
    two = visctrl(sd15, reference, ref_mask, [(target, tgt_mask)], passes=2, first_pass=FIRST, later_passes=LATER)
    edited, original = np.asarray(two.images[0]).astype(int), np.asarray(target).astype(int)
    outside = tgt_mask.numpy() < 0.5
    assert np.array_equal(edited[outside], original[outside])
    assert np.abs(edited - original)[~outside].mean() > 1.0
    # Pass 2 edits pass 1's output: one pass, then one more "later" pass on its result, gives the same image.
    one = visctrl(sd15, reference, ref_mask, [(target, tgt_mask)], passes=1, first_pass=FIRST)
    assert np.array_equal(np.asarray(one.images[0]), np.asarray(two.passes[0][0]))
    again = visctrl(sd15, reference, ref_mask, [(one.images[0], tgt_mask)], passes=1, first_pass=LATER)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(two.images[0]))


def test_visctrl_rejects_bad_masks(sd15):
    image = generate(sd15, "x", num_inference_steps=1, width=64, height=64, generator=seeded(0)).images[0]
    with pytest.raises(ValueError, match="mask is 32x32 but its image is 64x64"):
        visctrl(sd15, image, torch.ones(32, 32), [(image, torch.ones(64, 64))])
    with pytest.raises(ValueError, match="empty"):
        visctrl(sd15, image, torch.ones(64, 64), [(image, torch.zeros(64, 64))])


def test_visctrl_on_sdxl_keeps_pixels_outside_the_mask(sdxl):
    image = generate(sdxl, "a red star", num_inference_steps=2, width=64, height=64, generator=seeded(1)).images[0]
    mask = box(64, 64, 16, 16, 32, 32)
    out = visctrl(sdxl, image, mask, [(image.transpose(0), mask.flip(1))], first_pass=FIRST, crop=False)
    edited, original = np.asarray(out.images[0]).astype(int), np.asarray(image.transpose(0)).astype(int)
    outside = mask.flip(1).numpy() < 0.5
    assert np.array_equal(edited[outside], original[outside])
