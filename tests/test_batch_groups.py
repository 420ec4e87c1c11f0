"""Grouped UNet batches: items sharing their settings are cut into fixed groups; a group's images equal
one batched `generate` call with one seeded generator per row, and stay within float rounding of the
items run alone."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.batch.engines import RunSettings
from studio.batch.groups import plan_groups
from studio.batch.items import plan_items
from studio.batch.run import run_batch
from studio.batch.spec import parse_spec
from studio.registry import default_registry

PROMPTS = ["a red star on the left", "a blue ring in the center", "a green square", "a yellow cross"]


def _spec(tmp_path, out, group_size, steps=2):
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    data = {"job": {"task": "generate", "steps": steps}, "inputs": {"prompts": "prompts.txt"}, "out": out,
            "seed": {"rule": "derived", "base": 5}, "group_size": group_size}
    return parse_spec(data, "spec").resolved(tmp_path)


def test_groups_are_cut_from_consecutive_items_with_equal_settings(tmp_path):
    (tmp_path / "over.csv").write_text("key,steps\n00002,3\n")
    spec = _spec(tmp_path, "o", 2).model_copy(update={"overrides": str(tmp_path / "over.csv")})
    groups = plan_groups(plan_items(spec, default_registry()), 2)
    assert [[item.key for item in group] for group in groups] == [["00000", "00001"], ["00002"], ["00003"]]
    assert [len(g) for g in plan_groups(plan_items(_spec(tmp_path, "o", 3), default_registry()), 3)] == [3, 1]


@pytest.mark.slow
def test_a_group_is_one_batched_generate_call_and_close_to_single_runs(tmp_path):
    from pipelines.backbone import Backbone
    from pipelines.seeds import seeded_generators
    from pipelines.text_to_image import generate
    from studio.model_cache import ModelCache

    grouped, single = _spec(tmp_path, "grouped", 2), _spec(tmp_path, "single", 1)
    for spec in (grouped, single):
        summary = run_batch(spec, default_registry(), RunSettings(threads=1))
        assert summary.counts["done"] == len(PROMPTS)
    items = plan_items(grouped, default_registry())
    backbone = Backbone.from_pipeline(ModelCache().get("toyworld"))
    seeds = [item.job["seed"] for item in items[:2]]
    direct = generate(backbone, PROMPTS[:2], num_inference_steps=2, guidance_scale=items[0].job["guidance"],
                      generator=seeded_generators(seeds)).images
    for index, item in enumerate(items):
        batched = np.asarray(Image.open(tmp_path / "grouped" / f"{item.key}.png"), dtype=int)
        alone = np.asarray(Image.open(tmp_path / "single" / f"{item.key}.png"), dtype=int)
        if index < 2:
            assert np.array_equal(batched, np.asarray(direct[index], dtype=int))
        assert np.abs(batched - alone).max() <= 2  # a batched UNet call rounds differently, by a level or so
        assert Image.open(tmp_path / "grouped" / f"{item.key}.png").text["studio_job"]
