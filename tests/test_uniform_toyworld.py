"""Uniform Attention Maps on toyworld, against plain DDIM inversion and MasaCtrl editing on the same cases.

Floors sit under the figures measured on the bundled model (toyworld/uniform_eval.py; the README's UAM
section and `python bench/uniform_attention.py` give the larger tables). Measured, so stated as such:
on toyworld UAM inversion reconstructs as well as plain DDIM inversion, not better (4 renders, 5 steps:
27.71 dB both; 12 renders at 5/10/25 steps: -0.06/+0.36/-0.06 dB), because the empty prompt's cross-attention
barely depends on position here (uniform maps move the UNet's prediction by ~5%, against ~11% with the
caption), so the issue's +1 dB gate is not met; what UAM does beat by far is the text-conditioned
reconstruction an edit's source branch runs (caption, CFG 7.5: 18.62 dB). UAM editing keeps the
unedited area as well as MasaCtrl alone (3 cases, 10 steps, CFG 2: 26.58 against 26.68 dB), not better.
"""

from __future__ import annotations

import pytest

from toyworld.uniform_eval import editing, reconstruction

# Measured, 4 renders (seeds 0-3), 5 DDIM steps: ddim 27.71, uniform 27.71, caption 29.31, caption_cfg 18.62,
# the VAE round trip alone 32.22 dB.
RECONSTRUCTION_VS_DDIM = -0.5  # dB: UAM is not worse than plain DDIM inversion by more than this
RECONSTRUCTION_VS_TEXT_CFG = 7.0  # dB: UAM over the text-conditioned reconstruction with CFG 7.5
# Measured, 3 cases, 10 steps, CFG 2: PSNR outside the edited object uniform 26.58, ddim 26.68, mutual 26.87 dB;
# every edit took its colour with each.
EDIT_KEPT_VS_DDIM = -0.5  # dB
EDIT_DONE_FLOOR = 2 / 3


@pytest.mark.slow
def test_uniform_inversion_reconstructs_toyworld_as_well_as_ddim_and_far_better_than_the_text_branch(toyworld):
    table = reconstruction(toyworld, seeds=4, steps=5)
    v = table.values
    assert v["uniform"] - v["ddim"] >= RECONSTRUCTION_VS_DDIM, table
    assert v["uniform"] - v["caption_cfg"] >= RECONSTRUCTION_VS_TEXT_CFG, table
    assert v["uniform"] <= v["vae"], table  # no inversion beats the VAE round trip it includes


@pytest.mark.slow
def test_uniform_editing_keeps_the_unedited_area_as_masactrl_does_and_still_edits(toyworld):
    kept, done = editing(toyworld, cases=3, steps=10, guidance=2.0)
    assert kept.values["uniform"] - kept.values["ddim"] >= EDIT_KEPT_VS_DDIM, kept
    assert kept.values["uniform"] != kept.values["ddim"], "the uniform branch and its mixing changed nothing"
    assert done.values["uniform"] >= EDIT_DONE_FLOOR - 1e-9, done
