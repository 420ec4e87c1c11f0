"""The bundled model's pinned fixed-seed sample: 16 single-object prompts, 25 DDIM steps, CFG 5.

The outputs are deterministic for fixed seeds, so this cannot flake; thresholds sit below the figures
measured on the bundled weights (see bench/toyworld_quality.py for the 200-prompt table), with a margin
of about two images for floating-point differences between machines.
"""

from __future__ import annotations

import pytest

from toyworld import load_toyworld_pipeline
from toyworld.layout_probe import first_step_redness
from toyworld.quality import evaluate, prompt_set
from toyworld.render import PipelineRenderer
from toyworld.vocab import POSITIONS

N = 16
# Measured on the bundled weights (UNet 6000 steps on the frozen conditioning text tower, then three runs of
# the appearance-pair stage: 1,952 + 2,410 + 1,564 steps) with this exact sample: colour 16/16, shape 15/16,
# pattern 15/16, size 16/16, position 16/16, count 16/16. Floors sit two images under the measured figures.
# Pattern was 16/16 before the pair stage and 12/16 after its first run: its targets leave a copied pattern
# unsaid, which weakens "unsaid means plain".
THRESHOLDS = {"color": 14 / 16, "shape": 13 / 16, "pattern": 13 / 16, "size": 14 / 16, "position": 14 / 16,
              "count": 14 / 16}
# The bundled weights rank the named cell first for 9 of 9 positions; the floor leaves one to spare.
FIRST_STEP_NAMED_CELL_FIRST = 8


@pytest.mark.slow
def test_pinned_sample_meets_measured_thresholds():
    pipe = load_toyworld_pipeline()
    pipe.set_progress_bar_config(disable=True)
    render = PipelineRenderer(pipe, steps=25, guidance_scale=5.0)
    report = evaluate(render, prompt_set(N, 1, seed=0), [1000 + i for i in range(N)], name="pinned")
    acc = report.accuracy()
    for k, floor in THRESHOLDS.items():
        assert acc[k] >= floor, (k, acc)


@pytest.mark.slow
def test_generation_is_deterministic_per_seed():
    pipe = load_toyworld_pipeline()
    pipe.set_progress_bar_config(disable=True)
    render = PipelineRenderer(pipe, steps=10, guidance_scale=5.0)
    a = render.batch(["a red circle in the center, gray background", "a blue square on the left"], [3, 4])
    b = [render("a red circle in the center, gray background", 3), render("a blue square on the left", 4)]
    import numpy as np

    for x, y in zip(a, b, strict=True):
        assert np.abs(np.asarray(x, int) - np.asarray(y, int)).max() <= 2  # batch vs single: float noise only
    assert np.array_equal(np.asarray(render("a red circle", 3)), np.asarray(render("a red circle", 3)))


@pytest.mark.slow
def test_first_step_prediction_puts_the_object_where_the_caption_says():
    """Averaged over 16 starting noises, the guided x0 at the first step is reddest in the grid cell the
    position words name. The oracle is the grid geometry; a model that places objects by the seed gives
    the same map for every position and fails (the previous bundled model ranked the named cell first
    for 1 of the 9 positions)."""
    pipe = load_toyworld_pipeline()
    maps = first_step_redness(pipe, tuple(POSITIONS), samples=16)
    ranks = {m.position: m.named_cell_rank() for m in maps}
    assert sum(r == 0 for r in ranks.values()) >= FIRST_STEP_NAMED_CELL_FIRST, ranks
