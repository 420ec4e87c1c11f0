"""IP-Adapter composed with FreeCustom's MRSA in one UNet call equals the einsum oracles of both.

The oracle installs one naive processor per attention module: MRSA's published formula
(`tests/oracles.py`) at the decoder self-attention sites MRSA selects, plain softmax attention at the other
self-attention sites, and IP-Adapter's decoupled cross-attention written out here with explicit maps at
every cross-attention site. diffusers' own IP-Adapter cannot be the oracle here: its processor swap would
remove MRSA's.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attention_processors import BatchLayout, discover_sites
from attention_processors.ip_adapter import ImageBranch, IPAdapter
from attention_processors.masks import mask_to_tokens
from attention_processors.multi_reference import MultiReferenceSelfAttention
from attention_processors.selection import decoder_self_attention
from tests import oracles
from tests.ip_adapter_files import family_unet, random_image_branches
from tests.unet_calls import studio_output, unet_inputs

LATENT = (12, 16)
# Rows: uncond [target], cond [target], cond [reference] (MRSA at style fidelity 1 needs the reference only
# in the conditional half; the image prompt goes to the target rows only).
LAYOUT = BatchLayout.with_cfg(["target"]) + BatchLayout.without_cfg(["reference"])
TARGET_HALF = {0: "uncond", 1: "cond"}


def reference_mask() -> Tensor:
    mask = torch.zeros(LATENT)
    mask[2:10, 4:12] = 1
    return mask


def image_prompt_mask() -> Tensor:
    mask = torch.zeros(LATENT)
    mask[:, :8] = 1
    return mask


def ip_cross_attention(attn, x: Tensor, text: Tensor, name: str, size, branches: list[ImageBranch]) -> Tensor:
    """softmax(Q K_textᵀ) V_text + Σ s · m ⊙ softmax(Q K_ipᵀ) V_ip per row, maps explicit."""
    q, k, v = (oracles.heads(p, attn.heads) for p in (attn.to_q(x), attn.to_k(text), attn.to_v(text)))
    rows = []
    for b in range(x.shape[0]):
        out = oracles.softmax_attention(q[b], k[b], v[b])  # [H, Lq, D]
        if b in TARGET_HALF:
            for branch in branches:
                tokens = branch.tokens if TARGET_HALF[b] == "cond" else branch.negative_tokens  # [T, C]
                to_k, to_v = branch.weights[name]
                k_ip = oracles.heads((tokens @ to_k.T)[None], attn.heads)[0]  # [H, T, D]
                v_ip = oracles.heads((tokens @ to_v.T)[None], attn.heads)[0]
                weight = torch.tensor(float(branch.scale))
                if branch.mask is not None:
                    grid = F.interpolate(branch.mask[None, None], size=size, mode="bicubic")  # [1, 1, h, w]
                    weight = weight * grid.reshape(1, -1, 1)  # [1, Lq, 1]
                out = out + weight * oracles.softmax_attention(q[b], k_ip, v_ip)
        rows.append(out)
    return oracles.project_out(attn, rows)


class OracleProcessor:
    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        return attn.to_out[1](self.fn(attn, hidden_states, encoder_hidden_states))


def oracle_processors(unet, branches: list[ImageBranch], mrsa_sites) -> dict:
    processors = {}
    for site in discover_sites(unet):
        size = site.spatial_size(LATENT)
        if site.is_cross:
            fn = lambda attn, x, text, s=site, size=size: ip_cross_attention(attn, x, text, s.name, size, branches)
        elif mrsa_sites.matches(site):
            masks = [mask_to_tokens(reference_mask(), size)]
            fn = lambda attn, x, _, m=masks: oracles.multi_reference_self_attention(attn, x, {1: 1.0}, [2], m, [3.0])
        else:
            fn = lambda attn, x, _: oracles.multi_reference_self_attention(attn, x, {}, [], [], [])
        processors[f"{site.name}.processor"] = OracleProcessor(fn)
    return processors


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@torch.no_grad()
def test_ip_adapter_with_mrsa_equals_the_einsum_composition(family):
    unet = family_unet(family)
    branches = random_image_branches(family, mask=image_prompt_mask())
    mrsa = MultiReferenceSelfAttention(masks=[reference_mask()], weights=[3.0])
    inputs = unet_inputs(unet, LAYOUT.size, LATENT)
    got = studio_output(unet, inputs, [mrsa, IPAdapter(branches)], LAYOUT, step=5, total=10)

    saved = unet.attn_processors
    unet.set_attn_processor(oracle_processors(unet, branches, decoder_self_attention()))
    try:
        want = unet(**inputs).sample
    finally:
        unet.set_attn_processor(saved)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    for alone in ([mrsa], [IPAdapter(branches)]):  # each method acts, so neither can hide behind the other
        assert (got - studio_output(unet, inputs, alone, LAYOUT, step=5, total=10)).abs().max() > 1e-3


@torch.no_grad()
def test_ip_adapter_mrsa_and_a_lora_in_one_call_equal_the_oracle_on_merged_weights():
    """A LoRA (peft layers on every attention projection, random non-zero B) under IP-Adapter and MRSA.

    The oracle runs the same naive processors on a copy whose LoRA is merged into the base weights
    (peft's `merge`: W + s·B·A), an independent path from the unmerged forward the studio's processors
    call: a processor that read `to_q.weight` directly (dropping the LoRA) would fail here.
    """
    from peft import LoraConfig
    from peft.tuners.tuners_utils import BaseTunerLayer

    unet = copy.deepcopy(family_unet("sd15"))
    torch.manual_seed(11)
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    branches = random_image_branches("sd15", mask=image_prompt_mask())
    mrsa = MultiReferenceSelfAttention(masks=[reference_mask()], weights=[3.0])
    inputs = unet_inputs(unet, LAYOUT.size, LATENT)
    got = studio_output(unet, inputs, [mrsa, IPAdapter(branches)], LAYOUT, step=5, total=10)

    merged = copy.deepcopy(unet)
    for module in merged.modules():
        if isinstance(module, BaseTunerLayer):
            module.merge()
    merged.set_attn_processor(oracle_processors(merged, branches, decoder_self_attention()))
    torch.testing.assert_close(got, merged(**inputs).sample, atol=1e-5, rtol=0)
    plain = copy.deepcopy(family_unet("sd15"))  # the same controls without the LoRA: the LoRA acts
    assert (
        got - studio_output(plain, inputs, [mrsa, IPAdapter(branches)], LAYOUT, step=5, total=10)
    ).abs().max() > 1e-3
