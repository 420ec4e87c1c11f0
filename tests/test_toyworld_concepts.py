"""Held-out concepts: bundled references exist, masks match the detector, renders are reproducible."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from toyworld import toyworld_path
from toyworld.concepts import HELD_OUT_CONCEPTS, N_CONTEXT, N_REFERENCES, write_concept_assets
from toyworld.metrics import concept_present
from toyworld.vocab import TRAIN_PATTERNS, TRAIN_SHAPES

CONCEPTS = toyworld_path() / "concepts"


def test_concepts_are_outside_the_training_distribution():
    for c in HELD_OUT_CONCEPTS:
        assert c.shape not in TRAIN_SHAPES or c.pattern not in TRAIN_PATTERNS


@pytest.mark.parametrize("concept", HELD_OUT_CONCEPTS, ids=lambda c: c.name)
def test_bundled_references_show_the_concept_under_their_masks(concept):
    meta = json.loads((CONCEPTS / concept.name / "concept.json").read_text())
    refs = [e for e in meta["renders"] if e["kind"] == "reference"]
    ctx = [e for e in meta["renders"] if e["kind"] == "context"]
    assert len(refs) == N_REFERENCES and len(ctx) == N_CONTEXT
    for e in meta["renders"]:
        image = np.asarray(Image.open(CONCEPTS / concept.name / e["image"]).convert("RGB"))
        mask = np.asarray(Image.open(CONCEPTS / concept.name / e["mask"])) > 127
        assert mask.sum() > 30
        assert concept_present(image, shape=concept.shape, color=concept.color, pattern=concept.pattern,
                               color2=concept.color2, region=mask)


def test_bundled_assets_are_reproducible(tmp_path):
    write_concept_assets(tmp_path)
    for c in HELD_OUT_CONCEPTS:
        for f in (CONCEPTS / c.name).glob("*.png"):
            assert np.array_equal(np.asarray(Image.open(f)), np.asarray(Image.open(tmp_path / c.name / f.name)))
