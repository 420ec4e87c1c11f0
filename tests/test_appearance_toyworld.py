"""Toyworld behaviour of the appearance methods, each against the same run without the method.

Fixed seeds make these deterministic; floors sit under the figures measured on the bundled model with
`python bench/appearance_quality.py --quick` (see the README). The test asks for a gain over the baseline
(the same seeds and prompts without the control), so a control that stopped acting fails it.

Only mutual self-attention's object-appearance gate is tested: it is the one the bundled model shows.
VisCtrl's transfer and FreeCustom's composition measure 0% with and without the method on it (README,
"Appearance methods on toyworld"), and a threshold at 0% could not fail.
"""

from __future__ import annotations

import pytest

from pipelines.backbone import Backbone
from studio.toyworld import load_toyworld_pipeline
from studio.toyworld.method_eval import mutual_appearance

# Measured on the bundled weights, 12 cases: mutual 4/12, the same target prompts without it 0/12.
MUTUAL_FLOOR = 3 / 12
MUTUAL_GAIN = 3 / 12


@pytest.fixture(scope="module")
def toyworld() -> Backbone:
    pipe = load_toyworld_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return Backbone.from_pipeline(pipe)


@pytest.mark.slow
def test_mutual_self_attention_keeps_the_sources_unsaid_pattern_at_the_target_prompts_position(toyworld):
    rates = mutual_appearance(toyworld, seeds=2)
    assert rates.cases == 12
    assert rates.method >= MUTUAL_FLOOR, rates
    assert rates.method - rates.baseline >= MUTUAL_GAIN - 1e-9, rates
