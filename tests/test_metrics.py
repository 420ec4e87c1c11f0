"""toyworld.metrics: pixel metrics against numpy oracles; attribute accuracy and concept presence on renders."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toyworld.captions import caption
from toyworld.detector import detect
from toyworld.metrics import AttributeTally, concept_present, masked_mae, masked_mse, masked_psnr, psnr
from toyworld.world import Background, SceneSpec, make_object, render, render_seed


def test_psnr_matches_the_definition():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-10, 11, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean(((a.astype(float) - b.astype(float)) / 255.0) ** 2)
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / mse))
    assert psnr(a, a) == 100.0


def test_masked_metrics_see_only_their_region():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[:4] = 255  # change only the top half
    top = np.zeros((8, 8), bool)
    top[:4] = True
    assert masked_mse(a, b, top) == pytest.approx(1.0)
    assert masked_mse(a, b, top, outside=True) == 0.0
    assert masked_mae(a, b, top) == pytest.approx(1.0)
    assert masked_psnr(a, b, top, outside=True) == 100.0
    assert masked_psnr(a, b, top) == pytest.approx(0.0)
    assert math.isnan(masked_mse(a, b, np.zeros((8, 8), bool)))


def test_mask_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        masked_mse(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), np.zeros((4, 4), bool))


def test_attribute_accuracy_is_perfect_on_the_world_itself():
    """Oracle: a render is exactly what its caption says, so every asked attribute must be found."""
    tally = AttributeTally()
    for seed in range(60):
        r = render_seed(seed)
        tally.add(caption(r.spec), detect(r.image))
    acc = tally.accuracy()
    assert min(acc[k] for k in ("color", "shape", "pattern", "position", "size", "count")) >= 0.97


def test_attribute_accuracy_catches_a_wrong_image():
    wrong = render(SceneSpec((make_object("circle", "blue", position="on the left"),), Background()))
    tally = AttributeTally()
    tally.add("a red square on the right, gray background", detect(wrong.image))
    acc = tally.accuracy()
    assert acc["color"] == 0 and acc["shape"] == 0 and acc["position"] == 0 and acc["all"] == 0


def test_missing_object_fails_every_attribute():
    empty = render(SceneSpec((), Background()))
    tally = AttributeTally()
    tally.add("a red square on the right and a blue circle on the left", detect(empty.image))
    assert all(v == 0 for v in tally.accuracy().values())


def test_concept_present():
    star = make_object("star", "yellow", "twotone", "large", "in the center", color2="blue")
    image = render(SceneSpec((star,))).image
    assert concept_present(image, shape="star", color="yellow", pattern="twotone", color2="blue")
    assert not concept_present(image, shape="star", color="yellow", pattern="twotone", color2="red")
    assert not concept_present(image, shape="star", color="yellow", pattern="plain")
    left = np.zeros((64, 64), bool)
    left[:, :20] = True
    assert not concept_present(image, shape="star", color="yellow", pattern="twotone", color2="blue", region=left)
