"""The conditioning text-tower stage: its labels come from the scene, not from the caption parser alone."""

from __future__ import annotations

import numpy as np
import torch

from toyworld.captions import caption
from toyworld.train.text_tower import (
    ATTRIBUTES,
    BACKGROUND_ATTRIBUTES,
    IGNORE,
    MAX_OBJECTS,
    caption_labels,
    conditioning_summary,
)
from toyworld.world import sample_scene


def test_labels_of_a_canonical_caption_are_the_scene_attributes():
    """The oracle is the scene spec the caption was written from."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        scene = sample_scene(rng)
        objects, background = caption_labels(caption(scene))
        for slot in range(MAX_OBJECTS):
            decoded = {name: ATTRIBUTES[name][i] for name, i in zip(ATTRIBUTES, objects[slot].tolist(), strict=True)
                       if i != IGNORE}
            if slot < len(scene.objects):
                assert decoded == scene.objects[slot].attributes()
            else:
                assert decoded == {"shape": "<none>"}
        bg = scene.background
        decoded_bg = [BACKGROUND_ATTRIBUTES[n][i] if i != IGNORE else None
                      for n, i in zip(BACKGROUND_ATTRIBUTES, background.tolist(), strict=True)]
        assert decoded_bg == [bg.kind, bg.color, bg.color2 if bg.kind == "gradient" else None]


def test_unsaid_position_and_background_are_their_own_classes():
    objects, background = caption_labels("a red circle")
    assert ATTRIBUTES["position"][objects[0, 4]] == "<unsaid>"
    assert BACKGROUND_ATTRIBUTES["kind"][background[0]] == "<unsaid>" and (background[1:] == IGNORE).all()


def test_conditioning_summary_is_the_mean_of_the_states_from_the_first_eos_on():
    eos = 9
    ids = torch.tensor([[1, 5, 6, eos, eos, eos], [1, 5, eos, eos, eos, eos]])  # (B, L)
    hidden = torch.randn(2, 6, 3)  # (B, L, D)
    summary = conditioning_summary(hidden, ids, eos)  # (B, D)
    torch.testing.assert_close(summary[0], hidden[0, 3:].mean(0))
    torch.testing.assert_close(summary[1], hidden[1, 2:].mean(0))
