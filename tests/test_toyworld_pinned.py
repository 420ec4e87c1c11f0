"""The bundled model's pinned fixed-seed sample: 16 single-object prompts, 25 DDIM steps, CFG 5.

The outputs are deterministic for fixed seeds, so this cannot flake; thresholds sit below the figures
measured on the bundled weights (see bench/toyworld_quality.py for the 200-prompt table), with a margin
of about two images for floating-point differences between machines.
"""

from __future__ import annotations

import pytest

from studio.toyworld import load_toyworld_pipeline
from studio.toyworld.quality import evaluate, prompt_set
from studio.toyworld.render import PipelineRenderer

N = 16
# Measured on the bundled weights (UNet 4386 steps with the conditioning text tower) with this exact sample:
# colour 16/16, shape 15/16, pattern 14/16, size 15/16, count 14/16, position 2/16 (position is not
# followed yet: see the bench). Floors sit two images under the measured figures.
THRESHOLDS = {"color": 14 / 16, "shape": 13 / 16, "pattern": 12 / 16, "size": 13 / 16, "count": 12 / 16}


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
