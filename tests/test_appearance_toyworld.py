"""Toyworld behaviour of the appearance methods, each against the same run without the method.

Fixed seeds make these deterministic; floors sit under the figures measured on the bundled model with
`python bench/appearance_quality.py --quick` (see the README). What the bundled model can show is limited
by its self-attention (`python bench/self_attention_use.py`): swapping self-attention keys and values
moves an unsaid background from source to target, but not an object's pattern, so the object-appearance
gates of mutual self-attention, VisCtrl and FreeCustom are not tested here: they measure 0% with and
without the method on this model.
"""

from __future__ import annotations

import pytest

from pipelines.backbone import Backbone
from studio.toyworld import load_toyworld_pipeline
from studio.toyworld.method_eval import mutual_background

# Measured on the bundled weights, 12 cases: mutual 7/12, the same targets generated without it 4/12.
MUTUAL_BACKGROUND_FLOOR = 6 / 12
MUTUAL_BACKGROUND_GAIN = 2 / 12


@pytest.fixture(scope="module")
def toyworld() -> Backbone:
    pipe = load_toyworld_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return Backbone.from_pipeline(pipe)


@pytest.mark.slow
def test_mutual_self_attention_carries_the_sources_unsaid_background(toyworld):
    rates = mutual_background(toyworld, seeds=2)
    assert rates.cases == 12
    assert rates.method >= MUTUAL_BACKGROUND_FLOOR, rates
    assert rates.method - rates.baseline >= MUTUAL_BACKGROUND_GAIN - 1e-9, rates
