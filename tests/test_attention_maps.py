"""Cross-attention map recording: equals an explicit softmax, and leaves the output untouched."""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention

from attention_processors import BatchLayout, StepState, StudioAttnProcessor
from attention_processors.attention_maps import CrossAttentionMaps
from attention_processors.sites import Site
from tests import oracles

SITE = Site("up_blocks.1.attentions.0.transformer_blocks.0.attn2", True, "up", 1, 0, 0, 1, 0, 2, 16, 9)


@torch.no_grad()
def test_recorded_maps_equal_explicit_softmax_and_output_is_unchanged():
    torch.manual_seed(0)
    attn = Attention(query_dim=32, cross_attention_dim=24, heads=2, dim_head=16).eval()
    h, w = 4, 6
    x = torch.randn(2, h * w, 32)
    text = torch.randn(2, 7, 24)
    state = StepState()
    state.update(
        index=0, total=1, timestep=0, layout=BatchLayout.without_cfg(["target", "target"]), latent_size=(h, w)
    )
    control = CrossAttentionMaps(token_indices={1: [2, 3]}, size=(h, w))
    out = StudioAttnProcessor(SITE, [control], state)(attn, x, text)
    plain = StudioAttnProcessor(SITE, [], state)(attn, x, text)
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=0)

    q = oracles.heads(attn.to_q(x), 2)[1].double()
    k = oracles.heads(attn.to_k(text), 2)[1].double()
    probs = (q @ k.transpose(-1, -2) / 16**0.5).softmax(-1)  # [H, Lq, 7]
    expected = probs[:, :, [2, 3]].sum(-1).mean(0).reshape(h, w)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    maps = control.maps()
    assert set(maps) == {1}
    torch.testing.assert_close(maps[1].double(), expected, atol=1e-5, rtol=0)
