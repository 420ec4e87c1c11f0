"""RAG's soft refinement against the einsum oracle of its formula, on the tiny SD1.5 and SDXL UNets' own
cross-attention modules: overlapping regions, and a region too small to reach a coarse site's grid."""

from __future__ import annotations

import pytest
import torch

from attention_processors import BatchLayout, StepState, StudioAttnProcessor, discover_sites
from attention_processors.regional import RegionalCrossAttention, TextRegion
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline
from tests import oracles

LATENT = (8, 12)


def box(top: int, left: int, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(LATENT)
    mask[top : top + height, left : left + width] = 1
    return mask


def tokens(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """The oracle's own resampling: a token is in the region when at least half its latent cells are."""
    h, w = mask.shape
    blocks = mask.view(h // factor, factor, w // factor, factor).mean(dim=(1, 3))
    return (blocks >= 0.5).float().flatten()  # [h*w / factor²]


@pytest.fixture(scope="module")
def unets():
    return {"sd15": tiny_sd15_pipeline().unet, "sdxl": tiny_sdxl_pipeline().unet}


MASKS = [box(0, 0, 6, 8), box(3, 4, 5, 8), box(0, 11, 1, 1)]  # two overlapping, one a single latent cell


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("delta", [1.0, 0.6])
def test_soft_refinement_equals_the_einsum_formula_at_fine_and_coarse_sites(unets, family, delta):
    unet = unets[family]
    g = torch.Generator().manual_seed(3)
    dim = unet.config.cross_attention_dim
    texts = [torch.randn(77, dim, generator=g) for _ in MASKS]
    control = RegionalCrossAttention([TextRegion(t, m) for t, m in zip(texts, MASKS, strict=True)], delta=delta)
    layout = BatchLayout.with_cfg(["target", "target"])  # rows: uncond t0, t1; cond t0, t1
    state = StepState()
    state.update(index=3, total=10, timestep=500, layout=layout, latent_size=LATENT)
    cross = [s for s in discover_sites(unet) if s.is_cross]
    for site in (min(cross, key=lambda s: s.downsample), max(cross, key=lambda s: s.downsample)):
        attn = unet.get_submodule(site.name)
        lq = (LATENT[0] // site.downsample) * (LATENT[1] // site.downsample)
        x = torch.randn(4, lq, attn.to_q.in_features, generator=g)  # [B, Lq, C]
        context = torch.randn(4, 77, dim, generator=g)  # [B, 77, dim]
        with torch.no_grad():
            got = StudioAttnProcessor(site, [control], state)(attn, x, context)
            regions = [(t, tokens(m, site.downsample)) for t, m in zip(texts, MASKS, strict=True)]
            want = oracles.regional_cross_attention(attn, x, context, regions, rows=[2, 3], delta=delta)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=lambda m, s=site: f"{s.name}: {m}")
        if site.downsample >= 4:
            assert regions[2][1].sum() == 0  # the single cell covers nothing at the coarse site


def test_a_region_outside_every_token_of_a_site_leaves_it_stock(unets):
    unet = unets["sd15"]
    site = max((s for s in discover_sites(unet) if s.is_cross), key=lambda s: s.downsample)
    attn = unet.get_submodule(site.name)
    control = RegionalCrossAttention([TextRegion(torch.randn(77, unet.config.cross_attention_dim), MASKS[2])])
    state = StepState()
    state.update(index=0, total=1, timestep=1, layout=BatchLayout.with_cfg(["target"]), latent_size=LATENT)
    x = torch.randn(2, 6, attn.to_q.in_features)
    context = torch.randn(2, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        got = StudioAttnProcessor(site, [control], state)(attn, x, context)
        want = StudioAttnProcessor(site, [], state)(attn, x, context)
    assert torch.equal(got, want)


def test_delta_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="delta"):
        RegionalCrossAttention([], delta=1.5)
