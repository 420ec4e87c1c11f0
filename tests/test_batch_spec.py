"""The batch spec and its items: a bad spec is one line naming the bad field before anything runs; items get
their image or prompt, mask, seed and overrides by rule, the same on every planning."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image

from studio.batch.items import derived_seed, plan_items
from studio.batch.spec import BatchSpecError, load_spec, parse_spec
from studio.registry import default_registry


def _images(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (64, 64), (200, 30, 30)).save(folder / name)
    return folder


def _plan(data, base):
    return plan_items(parse_spec(data, "spec").resolved(base), default_registry())


def test_a_folder_gives_one_item_per_image_with_its_job_seed_and_output(tmp_path):
    _images(tmp_path / "in", "b.png", "a.png")
    spec = {"job": {"task": "mutual", "prompt": "a red star", "steps": 3}, "inputs": {"folder": "in"}, "out": "out",
            "seed": {"rule": "derived", "base": 7}}
    items = _plan(spec, tmp_path)
    assert [i.key for i in items] == ["a.png", "b.png"]
    first = items[0]
    assert first.job["image"] == str(tmp_path / "in" / "a.png")
    assert first.job["prompt"] == "a red star" and first.job["steps"] == 3
    expected_seed = int(hashlib.sha256(b"7:a.png").hexdigest()[:8], 16)
    assert first.job["seed"] == expected_seed == derived_seed(7, "a.png")
    assert first.output == str(tmp_path / "out" / "a.png")
    assert _plan(spec, tmp_path) == items  # planning again gives the same items
    fixed = _plan({**spec, "seed": {"rule": "fixed", "base": 7}}, tmp_path)
    assert {i.job["seed"] for i in fixed} == {7}


def test_a_prompt_list_csv_overrides_and_masks_by_rule(tmp_path):
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "a red star"}\n{"prompt": "a blue ring", "key": "ring"}\n')
    items = _plan({"job": {"task": "generate", "steps": 2}, "inputs": {"prompts": "prompts.jsonl"}, "out": "o"}, tmp_path)
    assert [(i.key, i.job["prompt"]) for i in items] == [("00000", "a red star"), ("ring", "a blue ring")]
    assert items[1].output == str(tmp_path / "o" / "ring.png")

    _images(tmp_path / "in", "x.png", "y.png")
    _images(tmp_path / "in" / "masks", "x.png")
    (tmp_path / "over.csv").write_text("file,prompt,start,steps\nx.png,a green cube,0.3,4\n")
    spec = {"job": {"task": "mutual", "steps": 2}, "inputs": {"folder": "in", "glob": "*.png"}, "out": "o",
            "masks": {"option": "source_mask"}, "overrides": "over.csv"}
    x, y = _plan(spec, tmp_path)
    assert x.job["prompt"] == "a green cube" and x.job["steps"] == 4
    assert x.job["options"]["mutual"] == {"source_mask": str(tmp_path / "in" / "masks" / "x.png"), "start": 0.3}
    assert x.problem is None
    assert y.problem is not None and "missing mask" in y.problem and y.job["steps"] == 2


def test_stems_that_collide_keep_their_whole_name(tmp_path):
    _images(tmp_path / "in", "a.png", "a.jpg", "b.png")
    items = _plan({"job": {"task": "invert"}, "inputs": {"folder": "in"}, "out": "o"}, tmp_path)
    assert [i.output.rsplit("/", 1)[1] for i in items] == ["a.jpg.png", "a.png.png", "b.png"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job": {"task": "paint"}}, "job.task: unknown task 'paint'"),
        ({"job": {"task": "mutual", "options": {"mutual": {"strat": 0.5}}}}, "unknown option options.mutual.strat"),
        ({"job": {"task": "mutual", "steps": "ten"}}, "steps"),
        ({"job": {"task": "mutual", "options": {"mutual": {"start": "late"}}}}, "options.mutual.start"),
        ({"inputs": {"folder": "nowhere"}}, "inputs.folder: .*nowhere is not a folder"),
        ({"inputs": {"folder": "empty"}}, "inputs.folder: no files match"),
        ({"inputs": {"folder": "in", "recursive": True}}, "inputs.recursive: unknown field"),
        ({"outt": "x"}, "outt: unknown field"),
        ({"seed": {"rule": "random"}}, "seed.rule"),
        ({"inputs": {"prompts": "p.txt"}}, "the mutual task takes an image"),
        ({"job": {"task": "generate"}}, "the generate task takes no input image; give inputs.prompts"),
        ({"overrides": "over.csv"}, "overrides: row 1 names 'zzz.png', which is not an input"),
        ({"job": {"task": "mutual", "image": "x.png"}}, "job.image"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_field(tmp_path, change, message):
    _images(tmp_path / "in", "a.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "p.txt").write_text("a star\n")
    (tmp_path / "over.csv").write_text("file,prompt\nzzz.png,x\n")
    spec = {"job": {"task": "mutual"}, "inputs": {"folder": "in"}, "out": "o", **change}
    with pytest.raises(BatchSpecError, match=message) as info:
        _plan(spec, tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o").exists()  # nothing written before the spec is accepted


def test_toml_and_json_specs_read_alike_and_fingerprint_their_content(tmp_path):
    _images(tmp_path / "in", "a.png")
    (tmp_path / "s.toml").write_text(
        'out = "o"\n[job]\ntask = "invert"\nsteps = 2\n[inputs]\nfolder = "in"\n[seed]\nrule = "fixed"\nbase = 3\n'
    )
    (tmp_path / "s.json").write_text(json.dumps(
        {"out": "o", "job": {"task": "invert", "steps": 2}, "inputs": {"folder": "in"}, "seed": {"rule": "fixed", "base": 3}}
    ))
    toml, js = load_spec(tmp_path / "s.toml"), load_spec(tmp_path / "s.json")
    assert toml == js and toml.fingerprint() == js.fingerprint()
    assert toml.out == str(tmp_path / "o")
    changed = load_spec(tmp_path / "s.json").model_copy(update={"job": {"task": "invert", "steps": 3}})
    assert changed.fingerprint() != js.fingerprint()
    (tmp_path / "bad.toml").write_text("job = [")
    with pytest.raises(BatchSpecError, match="not a valid spec file"):
        load_spec(tmp_path / "bad.toml")


def test_steps_and_guidance_left_out_are_the_tasks_own_as_its_command_gives(tmp_path):
    _images(tmp_path / "in", "a.png")
    (item,) = _plan({"job": {"task": "invert"}, "inputs": {"folder": "in"}, "out": "o"}, tmp_path)
    schedule = default_registry().task("invert").schedule
    assert (item.job["steps"], item.job["guidance"]) == (schedule.steps, schedule.guidance)


def test_the_manifest_fingerprint_changes_with_the_tasks_defaults_not_only_the_spec(tmp_path):
    import dataclasses

    from studio.batch.items import plan_fingerprint
    from studio.declarations import Schedule

    spec = parse_spec({"job": {"task": "invert"}, "inputs": {"folder": "in"}, "out": "o"}, "s").resolved(tmp_path)
    registry = default_registry()
    invert = registry.task("invert")
    other = registry.with_declarations(dataclasses.replace(invert, schedule=Schedule(invert.schedule.steps + 1, 1.0)))
    assert plan_fingerprint(spec, registry) == plan_fingerprint(spec, registry)
    assert plan_fingerprint(spec, other) != plan_fingerprint(spec, registry)
