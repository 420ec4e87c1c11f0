"""Uniform Attention Maps (arXiv 2411.19652): the uniform cross-attention control against the paper's
explicit 1/L map, the x̂0 mixing hook against a naive reimplementation of its formulas and diffusers' own
DDIM step, and the inversion option and the editing pipeline on the tiny SD1.5/SDXL models. The toyworld
gates are in tests/test_uniform_toyworld.py, the CLI in tests/test_uniform_cli.py.

The control's shared properties (switched off equals stock, batch equals single, restore, fused equals
einsum) are in tests/test_control_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention
from PIL import Image

from attention_processors import BatchLayout, StepState, StudioAttnProcessor
from attention_processors.sites import Site
from attention_processors.uniform_attention import UniformCrossAttention
from pipelines.backbone import Backbone
from pipelines.batch_plan import BatchPlan
from pipelines.hooks import StepEnd
from pipelines.inversion import invert
from pipelines.mutual import mutual_edit
from pipelines.reconstruction import reconstruct
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline
from pipelines.uniform_edit import uniform_edit
from pipelines.uniform_mixing import UniformMapMixing, edit_mask
from tests import oracles

H, W = 6, 8  # a non-square token grid
CROSS = Site("up_blocks.1.attentions.0.transformer_blocks.0.attn2", True, "up", 1, 0, 0, 1, 0, 2, 16, 8)


@pytest.fixture(scope="module")
def sd15() -> Backbone:
    return Backbone.from_pipeline(tiny_sd15_pipeline())


@pytest.fixture(scope="module")
def sdxl() -> Backbone:
    return Backbone.from_pipeline(tiny_sdxl_pipeline())


def cross_call(attn: Attention, x: torch.Tensor, text: torch.Tensor, controls, layout: BatchLayout) -> torch.Tensor:
    state = StepState()
    state.update(index=3, total=10, timestep=500, layout=layout, latent_size=(H, W))
    with torch.no_grad():
        return StudioAttnProcessor(CROSS, controls, state)(attn, x, encoder_hidden_states=text)


# ---- the control -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", [1, 3, 8])
@torch.no_grad()
def test_uniform_cross_attention_equals_the_papers_uniform_map(heads):
    torch.manual_seed(heads)
    attn = Attention(query_dim=48, cross_attention_dim=40, heads=heads, dim_head=8).eval()
    layout = BatchLayout.with_cfg(["source", "target"]) + BatchLayout.without_cfg(["uniform", "uniform"])
    g = torch.Generator().manual_seed(2)
    x = torch.randn(layout.size, H * W, 48, generator=g)  # [B, Lq, C]
    text = torch.randn(layout.size, 77, 40, generator=g)  # [B, L, C_text]
    got = cross_call(attn, x, text, [UniformCrossAttention(roles=("uniform",))], layout)
    want = oracles.uniform_cross_attention(attn, x, text, uniform_rows={4, 5})
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # every query of a uniform row gets the same feature: to_out(mean of the text values)
    mean_value = attn.to_out[0](attn.to_v(text[4]).mean(0))  # [C]
    torch.testing.assert_close(got[4], mean_value.expand(H * W, -1), atol=1e-5, rtol=0)


@torch.no_grad()
def test_uniform_cross_attention_without_roles_takes_every_row_and_leaves_self_attention():
    torch.manual_seed(0)
    attn = Attention(query_dim=32, cross_attention_dim=24, heads=2, dim_head=16).eval()
    layout = BatchLayout.without_cfg(["source", "source"])
    x, text = torch.randn(2, H * W, 32), torch.randn(2, 77, 24)
    got = cross_call(attn, x, text, [UniformCrossAttention()], layout)
    torch.testing.assert_close(got, oracles.uniform_cross_attention(attn, x, text, {0, 1}), atol=1e-5, rtol=0)
    self_site = Site("up_blocks.1.attentions.0.transformer_blocks.0.attn1", False, "up", 1, 0, 0, 1, 0, 2, 16, 8)
    assert not UniformCrossAttention().active(self_site, StepState())


# ---- the x̂0 mixing hook ------------------------------------------------------------------------------------


def naive_mask(delta: np.ndarray, q: float, radius: int) -> np.ndarray:
    """The official threshold written out: |Δ| > 2λ with λ the q-quantile of |Δ|, then a max over neighbours."""
    lam = np.quantile(np.abs(delta), q)
    edited = np.abs(delta) > 2 * lam  # (C, h, w)
    out = edited.copy()
    c, h, w = edited.shape
    for y in range(h):
        for x in range(w):
            window = edited[:, max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
            out[:, y, x] = window.reshape(c, -1).any(axis=1)
    return out


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_edit_mask_is_the_official_threshold_and_dilation(radius):
    delta = torch.randn(4, 9, 11, generator=torch.Generator().manual_seed(radius), dtype=torch.float64)
    got = edit_mask(delta, 0.6, radius).numpy().astype(bool)
    np.testing.assert_array_equal(got, naive_mask(delta.numpy(), 0.6, radius))


def step_end(sd15: Backbone, x0: torch.Tensor | None = None, index: int = 8) -> StepEnd:
    """A real DDIM step of 10 on streams [source, target, uniform], with the step's own x̂0 unless `x0` is given."""
    scheduler = sd15.ddim_scheduler()
    scheduler.set_timesteps(10)
    t = int(scheduler.timesteps[index])
    g = torch.Generator().manual_seed(7)
    sample, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    stepped, pred_x0 = scheduler.step(eps, t, sample, return_dict=False)
    layout = BatchLayout.without_cfg(["source", "target", "uniform"])
    schedule = tuple(int(s) for s in scheduler.timesteps)
    return StepEnd("denoise", index, 10, t, schedule, sample, eps, pred_x0 if x0 is None else x0, stepped,
                   BatchPlan.of(layout), scheduler)  # fmt: skip


def test_mixing_rebuilds_the_latents_with_diffusers_ddim_update(sd15):
    """When every branch predicts the same x̂0, mixing changes nothing: the rebuilt latents are DDIM's own step."""
    end = step_end(sd15)
    same = end.pred_x0[:1].expand(3, -1, -1, -1)
    end_same = step_end(sd15, x0=same)
    stepped, _ = end.scheduler.step(end.model_output, end.timestep, end.sample, return_dict=False)
    hook = UniformMapMixing(((0, 1, 2),), "epsilon", quantile=0.5, cutoff=200)
    got = hook(end_same)
    want = (end.scheduler.alphas_cumprod[end.timestep - 100].sqrt() * same
            + (1 - end.scheduler.alphas_cumprod[end.timestep - 100]).sqrt() * end.model_output)  # fmt: skip
    torch.testing.assert_close(got[:2], want[:2], atol=1e-6, rtol=0)
    torch.testing.assert_close(got[0], stepped[0], atol=1e-6, rtol=0)  # stream 0's own x̂0: diffusers' step
    torch.testing.assert_close(got[2], stepped[2], atol=0, rtol=0)  # the uniform stream is left as it stepped


def test_mixing_takes_the_uniform_x0_where_source_and_target_agree(sd15):
    end = step_end(sd15)
    hook = UniformMapMixing(((0, 1, 2),), "epsilon", quantile=0.5, cutoff=200, dilate=1)
    got = hook(end)
    q = 0.5 * end.index / (end.total - 1)
    edited = torch.from_numpy(naive_mask((end.pred_x0[0] - end.pred_x0[1]).numpy(), q, 1)).float()
    a_prev = end.scheduler.alphas_cumprod[end.timestep - 100]
    x0_tgt = end.pred_x0[1] * edited + end.pred_x0[2] * (1 - edited)
    x0_src = end.pred_x0[0] * (1 - edited) + end.pred_x0[2] * edited
    for stream, x0 in ((0, x0_src), (1, x0_tgt)):
        want = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * end.model_output[stream]
        torch.testing.assert_close(got[stream], want, atol=1e-6, rtol=0)
    assert 0 < edited.mean() < 1


def test_mixing_acts_only_below_the_cutoff(sd15):
    hook = UniformMapMixing(((0, 1, 2),), "epsilon", quantile=0.5, cutoff=200)
    assert hook(step_end(sd15, index=5)) is None  # t = 401
    assert hook(step_end(sd15, index=8)) is not None  # t = 101
    with pytest.raises(ValueError, match="quantile"):
        UniformMapMixing((), "epsilon", quantile=1.5)


# ---- inversion option and editing pipeline on the tiny models ----------------------------------------------


def picture(seed: int, size: tuple[int, int] = (32, 32)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8))


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_uniform_inversion_is_the_control_during_inversion_and_changes_the_trajectory(family, request):
    backbone = request.getfixturevalue(family)
    image = picture(0)
    uniform = invert(backbone, image, "a red cube", num_inference_steps=3, uniform=True)
    by_hand = invert(backbone, image, "a red cube", num_inference_steps=3, controls=[UniformCrossAttention()])
    plain = invert(backbone, image, "a red cube", num_inference_steps=3)
    assert torch.equal(uniform.x_T, by_hand.x_T)
    assert (uniform.x_T - plain.x_T).abs().max() > 1e-4
    rebuilt = reconstruct(backbone, uniform, "a red cube", uniform=True, teacher_forcing=True)
    assert torch.equal(rebuilt.latents, uniform.latents)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_uniform_edit_without_mixing_steps_equals_the_ddim_edit(family, request):
    """The uniform branch shares the batch but no row reads it: with the cutoff at 0 the edit is plain MasaCtrl."""
    backbone = request.getfixturevalue(family)
    image = picture(1, (32, 48))  # non-square
    kw = dict(num_inference_steps=3, guidance_scale=5.0)
    plain = uniform_edit(backbone, image, "a blue cube", inversion="ddim", **kw)
    unmixed = uniform_edit(backbone, image, "a blue cube", cutoff=0, **kw)
    scale = plain.latents.abs().max()
    torch.testing.assert_close(unmixed.latents / scale, plain.latents / scale, atol=1e-5, rtol=0)
    assert len(unmixed.reconstructions) == 1 and not plain.reconstructions
    mixed = uniform_edit(backbone, image, "a blue cube", cutoff=1000, **kw)
    assert (mixed.latents - plain.latents).abs().max() > 1e-4


def test_uniform_edit_batch_equals_each_edit_alone(sd15):
    kw = dict(num_inference_steps=3, guidance_scale=5.0, cutoff=1000)
    images, prompts = [picture(2), picture(3)], ["a blue cube", "a red star"]
    together = uniform_edit(sd15, images, prompts, **kw)
    for i in range(2):
        alone = uniform_edit(sd15, images[i], prompts[i], **kw)
        scale = alone.latents.abs().max()
        # batch rounding (~1e-6), magnified by the tiny random UNet over the steps
        torch.testing.assert_close(together.latents[i : i + 1] / scale, alone.latents / scale, atol=1e-4, rtol=0)


def test_uniform_edit_refuses_bad_input(sd15):
    with pytest.raises(ValueError, match="unknown inversion mode 'null'; expected one of ddim, uniform"):
        uniform_edit(sd15, picture(0), "a cube", inversion="null")
    with pytest.raises(ValueError, match="DDIM sampler"):
        uniform_edit(sd15, picture(0), "a cube", sampler="euler")
    with pytest.raises(ValueError, match="2 target prompts for 1 images"):
        uniform_edit(sd15, picture(0), ["a cube", "a star"])
    with pytest.raises(ValueError, match="quantile"):
        uniform_edit(sd15, picture(0), "a cube", quantile=2.0)
    with pytest.raises(ValueError, match="uniform inversion needs a real source image"):
        mutual_edit(sd15, "a cube", inversion="uniform", generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="unknown inversion mode 'x'"):
        mutual_edit(sd15, "a cube", source_image=picture(0), inversion="x")
