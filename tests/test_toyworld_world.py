"""The procedural world: determinism per seed, ground truth consistent with pixels, no held-out leaks."""

from __future__ import annotations

import numpy as np
import pytest

from toyworld.captions import caption, parse_caption
from toyworld.vocab import (
    BACKGROUND_COLORS,
    COLORS,
    HELD_OUT_PATTERNS,
    HELD_OUT_SHAPES,
    TRAIN_PATTERNS,
    TRAIN_SHAPES,
)
from toyworld.world import render, render_seed, sample_scene


def test_same_seed_same_render_and_truth():
    a, b = render_seed(123), render_seed(123)
    assert np.array_equal(a.image, b.image)
    assert a.spec == b.spec
    for x, y in zip(a.objects, b.objects, strict=True):
        assert np.array_equal(x.mask, y.mask) and x.box == y.box


def test_different_seeds_differ():
    images = [render_seed(s).image for s in range(8)]
    assert len({im.tobytes() for im in images}) == 8


def test_scene_vocabulary_is_as_specified():
    assert len(COLORS) >= 8
    assert {"circle", "square", "triangle", "star", "ring", "cross"} <= set(TRAIN_SHAPES)
    assert set(TRAIN_PATTERNS) == {"plain", "striped", "dotted", "checkered"}
    assert not set(HELD_OUT_SHAPES) & set(TRAIN_SHAPES)
    assert not set(HELD_OUT_PATTERNS) & set(TRAIN_PATTERNS)


def test_sampler_never_draws_held_out_concepts():
    rng = np.random.default_rng(0)
    seen_shapes, seen_patterns, counts = set(), set(), set()
    for _ in range(1500):
        scene = sample_scene(rng)
        counts.add(len(scene.objects))
        seen_shapes |= {o.shape for o in scene.objects}
        seen_patterns |= {o.pattern for o in scene.objects}
    assert seen_shapes == set(TRAIN_SHAPES)
    assert seen_patterns == set(TRAIN_PATTERNS)
    assert counts == {1, 2, 3}


@pytest.mark.parametrize("seed", range(20))
def test_ground_truth_matches_pixels(seed):
    """Independent oracle: object pixels carry the object's chromaticity; masks are disjoint and boxed."""
    r = render_seed(seed)
    union = np.zeros(r.image.shape[:2], bool)
    for obj in r.objects:
        ys, xs = np.nonzero(obj.mask)
        assert obj.mask.sum() > 20
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == obj.box
        assert not (union & obj.mask).any()
        union |= obj.mask
        core = obj.mask.copy()
        pixels = r.image[core].astype(float)
        chroma = pixels / pixels.sum(1, keepdims=True)
        ref = np.array(COLORS[obj.spec.color], float)
        assert np.median(np.abs(chroma - ref / ref.sum()).sum(1)) < 0.08
        cx, cy = obj.spec.center
        assert obj.box[0] <= cx <= obj.box[2] and obj.box[1] <= cy <= obj.box[3]
    # Background pixels far from objects are achromatic (all background colours are near-grey).
    bg = r.image[~union].astype(int)
    assert np.percentile(bg.max(1) - bg.min(1), 95) <= max(max(c) - min(c) for c in BACKGROUND_COLORS.values()) + 6


def test_objects_do_not_touch():
    for seed in range(200):
        r = render_seed(seed)
        for i, a in enumerate(r.objects):
            grown = np.zeros_like(a.mask)
            ys, xs = np.nonzero(a.mask)
            grown[np.clip(ys[:, None] + np.arange(-1, 2), 0, 63).ravel(),
                  np.clip(xs[:, None] + np.zeros(3, int), 0, 63).ravel()] = True
            for b in r.objects[i + 1 :]:
                assert not (grown & b.mask).any()


@pytest.mark.parametrize("seed", range(30))
def test_captions_parse_back_to_the_scene(seed):
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng)
    for text in (caption(scene), caption(scene, rng)):
        queries, _ = parse_caption(text)
        assert len(queries) == len(scene.objects)
        for q, o in zip(queries, scene.objects, strict=True):
            assert (q.shape, q.color, q.pattern, q.size) == (o.shape, o.color, o.pattern, o.size or "medium")
            assert q.position in (None, o.position)
    queries, bg = parse_caption(caption(scene))
    assert all(q.position is not None for q in queries) and bg is not None


def test_render_of_explicit_scene_places_object_where_asked():
    from toyworld.world import Background, SceneSpec, make_object

    r = render(SceneSpec((make_object("square", "red", position="at the top left"),), Background("plain", "gray")))
    ys, xs = np.nonzero(r.objects[0].mask)
    assert xs.mean() < 24 and ys.mean() < 24
