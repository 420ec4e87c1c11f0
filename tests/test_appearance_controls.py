"""Mutual self-attention, MRSA and VisCtrl at one attention layer against the published formulas
(tests/oracles.py), plus method-specific invariances. The properties every control shares (switched off
equals stock, batch equals single, restore, fused equals einsum) are in tests/test_control_contract.py."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention

from attention_processors import BatchLayout, StepState, StepWindow, StudioAttnProcessor
from attention_processors.multi_reference import MultiReferenceSelfAttention
from attention_processors.mutual_self_attention import MaskPair, MutualSelfAttention
from attention_processors.sites import Site
from tests import oracles

H, W = 6, 8  # a non-square token grid
SITE = Site("up_blocks.1.attentions.0.transformer_blocks.0.attn1", False, "up", 1, 0, 0, 1, 0, 2, 16, 8)


@pytest.fixture(scope="module")
def attn() -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=32, heads=2, dim_head=16).eval()


def run(attn, x, controls, layout, step=10, total=50):
    state = StepState()
    state.update(index=step, total=total, timestep=500, layout=layout, latent_size=(H, W))
    with torch.no_grad():
        return StudioAttnProcessor(SITE, controls, state)(attn, x)


def tokens(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, H * W, 32, generator=torch.Generator().manual_seed(seed))


def blob(top: int, left: int, h: int, w: int) -> torch.Tensor:
    m = torch.zeros(H, W)
    m[top : top + h, left : left + w] = 1
    return m


@torch.no_grad()
def test_mutual_self_attention_equals_oracle(attn):
    layout = BatchLayout.with_cfg(["source", "target", "target"])  # one source drives two targets
    x = tokens(layout.size)
    got = run(attn, x, [MutualSelfAttention()], layout)
    want = oracles.mutual_self_attention(attn, x, {1: 0, 2: 0, 4: 3, 5: 3})
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@torch.no_grad()
def test_masked_mutual_self_attention_equals_oracle(attn):
    layout = BatchLayout.with_cfg(["source", "target"])
    src, tgt = blob(1, 1, 3, 4), blob(2, 3, 3, 4)
    x = tokens(layout.size)
    got = run(attn, x, [MutualSelfAttention(masks=MaskPair(src, tgt))], layout)
    want = oracles.mutual_self_attention(attn, x, {1: 0, 3: 2}, masks=(src.flatten(), tgt.flatten()))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@torch.no_grad()
def test_mutual_self_attention_with_source_equal_target_is_plain(attn):
    layout = BatchLayout.with_cfg(["source", "target"])
    x = tokens(2)
    x = torch.cat([x[:1], x[:1], x[1:], x[1:]])  # target rows are copies of the source rows
    torch.testing.assert_close(
        run(attn, x, [MutualSelfAttention()], layout), run(attn, x, [], layout), atol=1e-6, rtol=0
    )


@torch.no_grad()
def test_mutual_self_attention_respects_its_step_window(attn):
    layout = BatchLayout.with_cfg(["source", "target"])
    x = tokens(layout.size)
    control = MutualSelfAttention(steps=StepWindow(4 / 50, 1.0))
    torch.testing.assert_close(
        run(attn, x, [control], layout, step=3), run(attn, x, [], layout, step=3), atol=0, rtol=0
    )
    assert (run(attn, x, [control], layout, step=4) - run(attn, x, [], layout, step=4)).abs().max() > 1e-3


def mrsa_masks():
    return [blob(0, 0, 3, 3), torch.zeros(H, W), blob(2, 4, 4, 4)]  # the second reference's mask is empty


@pytest.mark.parametrize("fidelity", [1.0, 0.4])
@torch.no_grad()
def test_multi_reference_self_attention_equals_oracle(attn, fidelity):
    masks, weights = mrsa_masks(), [3.0, 2.0, 1.5]
    refs = ["reference"] * 3
    # sf = 1: references only in the conditional half; sf < 1: in both.
    layout = (
        BatchLayout.with_cfg(["target"]) + BatchLayout.without_cfg(refs)
        if fidelity == 1.0
        else BatchLayout.with_cfg(["target"] + refs)
    )
    x = tokens(layout.size)
    control = MultiReferenceSelfAttention(masks=masks, weights=weights, style_fidelity=fidelity)
    got = run(attn, x, [control], layout)
    if fidelity == 1.0:
        want = oracles.multi_reference_self_attention(
            attn, x, {1: 1.0}, [2, 3, 4], [m.flatten() for m in masks], weights
        )
    else:
        u = oracles.multi_reference_self_attention(
            attn, x, {0: 1 - fidelity}, [1, 2, 3], [m.flatten() for m in masks], weights
        )
        c = oracles.multi_reference_self_attention(attn, x, {4: 1.0}, [5, 6, 7], [m.flatten() for m in masks], weights)
        want = torch.cat([u[:4], c[4:]])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_controls_reject_bad_masks():
    with pytest.raises(ValueError, match="empty"):
        MaskPair(torch.zeros(4, 4), torch.ones(4, 4))
    with pytest.raises(ValueError, match="2-D"):
        MultiReferenceSelfAttention(masks=[torch.ones(1, 4, 4)])
    with pytest.raises(ValueError, match="weights"):
        MultiReferenceSelfAttention(masks=[torch.ones(4, 4)], weights=[1.0, 2.0])


@torch.no_grad()
def test_missing_roles_are_a_clear_error(attn):
    layout = BatchLayout.with_cfg(["target"])
    with pytest.raises(ValueError, match="source"):
        run(attn, tokens(2), [MutualSelfAttention()], layout)
    with pytest.raises(ValueError, match="reference 0"):
        run(attn, tokens(2), [MultiReferenceSelfAttention(masks=[torch.ones(H, W)])], layout)


@torch.no_grad()
def test_visctrl_acts_on_every_self_attention_block_but_the_first(attn):
    from attention_processors.visctrl import visctrl_control

    control = visctrl_control()
    first = Site("down_blocks.0.attentions.0.transformer_blocks.0.attn1", False, "down", 0, 0, 0, 1, 0, 2, 16, 0)
    later = Site("down_blocks.0.attentions.0.transformer_blocks.0.attn1", False, "down", 0, 0, 0, 1, 0, 2, 16, 2)
    cross = Site("down_blocks.0.attentions.0.transformer_blocks.0.attn2", True, "down", 0, 0, 0, 1, 0, 2, 16, 3)
    state = StepState()
    state.update(index=2, total=10, timestep=0)
    assert not control.active(first, state) and control.active(later, state) and not control.active(cross, state)
    state.update(index=1, total=10, timestep=0)
    assert not control.active(later, state)  # first pass: from step 2 of 10
    state.update(index=1, total=5, timestep=0)
    assert control.active(later, state)  # later passes: from step 1 of 5


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@torch.no_grad()
def test_feature_gradual_sampling_equals_oracle_when_sampling_everything(attn, alpha):
    from attention_processors.visctrl import FeatureGradualSampling

    layout = BatchLayout.with_cfg(["reference", "target", "target", "target"])
    x = tokens(layout.size)
    control = FeatureGradualSampling(alpha=alpha, sample_fraction=1.0)
    got = run(attn, x, [control], layout)
    u = oracles.gradual_sampling_full(attn, x, 0, [1, 2, 3], alpha)
    c = oracles.gradual_sampling_full(attn, x, 4, [5, 6, 7], alpha)
    torch.testing.assert_close(got, torch.cat([u[:4], c[4:]]), atol=1e-5, rtol=0)


@torch.no_grad()
def test_feature_gradual_sampling_is_deterministic_and_samples(attn):
    from attention_processors.visctrl import FeatureGradualSampling

    layout = BatchLayout.with_cfg(["reference", "target", "target"])
    x = tokens(layout.size)
    half = FeatureGradualSampling(alpha=0.5, sample_fraction=0.5, seed=3)
    a, b = run(attn, x, [half], layout), run(attn, x, [half], layout)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    full = run(attn, x, [FeatureGradualSampling(alpha=0.5, sample_fraction=1.0)], layout)
    torch.testing.assert_close(a[[0, 1, 3, 4]], full[[0, 1, 3, 4]], atol=1e-6, rtol=0)  # reference and view 0
    assert (a[2] - full[2]).abs().max() > 1e-4  # view 1 saw only half of view 0's tokens
