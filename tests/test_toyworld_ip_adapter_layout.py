"""The toyworld IP-Adapter's trainer writes the official layout, and the studio's loader reads it back exactly.

Oracle: the trainer's own modules. A file written from them must give, through the loader real adapters
go through (`pipelines/ip_adapter_weights.py`, which builds diffusers' `IPAdapterPlusImageProjection` with
diffusers' converter), the same image tokens and the same per-layer image keys/values.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from pipelines.ip_adapter_weights import adapter_from_state, build_projection, load_adapter, site_weights
from toyworld import toyworld_ip_adapter, toyworld_path
from toyworld.train.ip_adapter import NUM_TOKENS, ImageTokens, ToyIPAdapter, official_state


@pytest.fixture(scope="module")
def unet() -> UNet2DConditionModel:
    return UNet2DConditionModel.from_pretrained(toyworld_path() / "unet", local_files_only=True).eval()


def random_adapter(unet: UNet2DConditionModel) -> ToyIPAdapter:
    torch.manual_seed(0)
    tower = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                                           num_attention_heads=4, image_size=64, patch_size=8,
                                                           projection_dim=128))
    adapter = ToyIPAdapter(tower, unet, ImageTokens())
    with torch.no_grad():
        for p in adapter.resampler.parameters():
            p.add_(0.05 * torch.randn_like(p))  # off the initialisation, so a swapped key shows
        for layer in adapter.layers:
            layer.to_k_ip.weight.add_(0.05 * torch.randn_like(layer.to_k_ip.weight))
    return adapter.eval()


def test_the_written_layout_loads_as_a_plus_adapter_with_the_same_tokens_and_layers(unet):
    adapter = random_adapter(unet)
    weights = adapter_from_state("toy.safetensors", official_state(adapter, unet))
    assert weights.kind == "plus"
    hidden = torch.randn(2, 65, 128)  # [B, 1 + patches, hidden]
    with torch.no_grad():
        expected = adapter.resampler(hidden)  # [2, T, C]
        got = build_projection(weights, unet)(hidden)
    assert got.shape == (2, NUM_TOKENS, unet.config.cross_attention_dim)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    sites = site_weights(weights, unet)
    assert list(sites) == adapter.layer_names
    for layer, (to_k, to_v) in zip(adapter.layers, sites.values(), strict=True):
        assert torch.equal(to_k, layer.to_k_ip.weight) and torch.equal(to_v, layer.to_v_ip.weight)


def test_the_bundled_adapter_is_official_layout_safetensors_for_the_bundled_unet_and_image_encoder(unet):
    path = toyworld_ip_adapter()
    keys = load_file(str(path)).keys()
    assert all(k.startswith(("image_proj.", "ip_adapter.")) for k in keys)
    weights = load_adapter(path)
    assert weights.kind == "plus"
    assert len(site_weights(weights, unet)) == 7  # every cross-attention of the toyworld UNet
    tower = CLIPVisionModelWithProjection.from_pretrained(toyworld_path() / "image_encoder", local_files_only=True)
    assert weights.image_embed_dim == tower.config.hidden_size
