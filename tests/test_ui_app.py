"""The web UI's handlers, driven directly (no browser) on the tiny SD1.5 model.

The oracles: the task declarations (every option gets a widget of its kind), the CLI (the same settings
give the same job and the same output bytes), the cancel token's contract (stop at the next step
boundary), and the studio's own metadata reader (a restored job re-runs to the same bytes).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the UI needs the `ui` extra (gradio)")

from studio.declarations import ImagePath, MaskPath, Zipped
from studio.images import open_image
from studio.masks import load_mask
from studio.metadata import read_job
from studio.model_cache import ModelCache
from studio.registry import default_registry
from ui.app import StudioUI
from ui.form_job import painted_mask
from ui.form_spec import form_specs, option_key
from ui.preview import latent_preview
from ui.runs import SessionRuns

SIZE = 64


@pytest.fixture(scope="module")
def models() -> ModelCache:
    return ModelCache()


@pytest.fixture
def ui(models, tiny_sd15_dir, tmp_path) -> StudioUI:
    return StudioUI(SessionRuns(models, tmp_path / "out"), models=[str(tiny_sd15_dir)], work_dir=tmp_path / "work")


def form(model: Path, **values) -> dict:
    return {"model": str(model), "seed": 3, "steps": 2, "guidance": 5.0, "width": SIZE, "height": SIZE, **values}


def last(updates) -> object:
    *_, final = updates
    return final


def test_every_option_of_every_task_has_a_widget_of_its_kind():
    for task in default_registry().tasks.values():
        specs = {spec.key: spec for spec in form_specs(task)}
        for name, info in task.options.model_fields.items():
            zipped = next((m for m in info.metadata if isinstance(m, Zipped)), None)
            if zipped is not None:
                (record, *_) = info.annotation.__args__
                assert {option_key(name, 0, sub) for sub in record.model_fields} <= set(specs)
                continue
            spec = specs[option_key(name)]
            if any(isinstance(m, ImagePath) for m in info.metadata):
                assert spec.kind == "image"
            elif any(isinstance(m, MaskPath) for m in info.metadata):
                assert spec.kind == "mask"
                assert spec.mask_of is None or specs[spec.mask_of].kind == "image"
            elif info.annotation is bool:
                assert spec.kind == "checkbox" and spec.default == info.default
            elif info.annotation in (int, float):
                assert spec.default == info.default
                if spec.kind == "slider":
                    attrs = ("ge", "gt", "le")
                    bounds = [getattr(m, a) for m in info.metadata for a in attrs if hasattr(m, a)]
                    assert (spec.minimum, spec.maximum) == (min(bounds), max(bounds))


def test_a_form_runs_the_clis_job_and_writes_the_same_bytes(ui, runner, tiny_sd15_dir, tmp_path):
    from studio.cli import app

    cli_out = tmp_path / "cli.png"
    result = runner.invoke(
        app,
        [
            "mutual",
            "a red ball",
            "--source-prompt",
            "a blue cube",
            "--start",
            "0.3",
            "--model",
            str(tiny_sd15_dir),
            "--seed",
            "3",
            "--steps",
            "2",
            "-g",
            "5",
            "-W",
            str(SIZE),
            "-H",
            str(SIZE),
            "--out",
            str(cli_out),
        ],
    )
    assert result.exit_code == 0, result.output
    values = form(tiny_sd15_dir, prompt="a red ball", **{"opt.source_prompt": "a blue cube", "opt.start": 0.3})
    final = last(ui.run_form("mutual", values, "alice"))
    assert final.outcome == "done", final.status
    (ui_out,) = final.outputs
    assert read_job(ui_out).job == read_job(cli_out).job
    assert ui_out.read_bytes() == cli_out.read_bytes()


def test_progress_reports_every_step_with_previews(ui, tiny_sd15_dir):
    updates = list(ui.run_form("generate", form(tiny_sd15_dir, prompt="a red ball", steps=4), "alice"))
    steps = [u for u in updates if u.outcome is None and u.status.startswith("denoise")]
    fractions = [u.fraction for u in steps]  # updates are coalesced when the browser falls behind
    assert fractions == sorted(set(fractions)) and fractions[-1] == 1.0
    assert any(u.preview is not None for u in updates)
    assert updates[-1].outcome == "done" and updates[-1].fraction == 1.0


def test_preview_is_the_latents_channels_stretched():
    import torch

    latents = torch.zeros(1, 4, 2, 2)
    latents[0, 0, 0, 0] = 5.0  # channel 0 is brightest top-left
    image = latent_preview(latents, upscale=2)
    pixels = np.asarray(image)
    assert image.size == (4, 4)
    assert pixels[0, 0, 0] == 255 and pixels[3, 3, 0] == 0 and pixels[..., 1].max() == 0


@pytest.mark.parametrize(
    ("task", "values", "expected"),
    [
        ("invert", {}, "needs an input image"),
        ("generate", {"steps": 5000}, "steps"),
        ("generate", {"model": "/etc"}, "not offered by this server"),
    ],
)
def test_bad_input_ends_with_one_line(ui, tiny_sd15_dir, task, values, expected):
    final = last(ui.run_form(task, {**form(tiny_sd15_dir, prompt="x"), **values}, "alice"))
    assert final.outcome == "failed"
    assert expected in final.status and "\n" not in final.status and "Traceback" not in final.status


def test_an_upload_that_is_not_an_image_is_one_line(ui, tiny_sd15_dir, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("not an image at all")
    final = last(ui.run_form("invert", form(tiny_sd15_dir, image=str(fake)), "alice"))
    assert final.outcome == "failed" and "fake.png" in final.status and "\n" not in final.status


def test_cancel_stops_the_sessions_job_at_the_next_step_and_only_its_own(ui, tiny_sd15_dir):
    seen = 0
    other_could_cancel = None
    for update in ui.run_form("generate", form(tiny_sd15_dir, prompt="a red ball", steps=200), "alice"):
        match = re.match(r"denoise: step (\d+) of", update.status)
        if match and other_could_cancel is None:
            other_could_cancel = ui.cancel("bob")
            seen = int(match[1])
            assert ui.cancel("alice") == "cancelling at the next step"
        final = update
    assert other_could_cancel == "nothing to cancel"
    assert final.outcome == "cancelled", final.status
    stopped = int(re.search(r"before step (\d+) of 200", final.status)[1])
    assert seen <= stopped <= seen + 1  # the step running when Cancel came finishes; no further step starts
    after = last(ui.run_form("generate", form(tiny_sd15_dir, prompt="a red ball"), "alice"))
    assert after.outcome == "done"  # the session's next job runs


def test_a_painted_mask_becomes_the_jobs_mask_file(ui, tiny_sd15_dir, tmp_path):
    target = tmp_path / "target.png"
    Image.new("RGB", (SIZE, SIZE), (40, 80, 120)).save(target)
    layer = np.zeros((SIZE * 2, SIZE * 2, 4), np.uint8)  # the editor's canvas may be larger than the image
    layer[20:60, 40:100, 3] = 255
    editor = {"background": None, "layers": [layer], "composite": None}
    values = form(
        tiny_sd15_dir, prompt="x", image=str(target), **{"opt.reference": str(target), "opt.target_mask": editor}
    )
    values.pop("width"), values.pop("height")
    job = ui.job_of_form("visctrl", values, "alice")
    mask = load_mask(job.options["visctrl"]["target_mask"], expected_size=(SIZE, SIZE))
    expected = painted_mask(editor, (SIZE, SIZE))
    assert np.array_equal(mask.numpy().astype(bool), expected)
    assert expected[10:30, 20:50].all() and not expected[:10].any()
    assert job.options["visctrl"]["reference_mask"] is None  # nothing painted: the automatic mask


def test_a_dropped_png_restores_its_job_and_reruns_to_the_same_bytes(ui, tiny_sd15_dir):
    first = last(ui.run_form("generate", form(tiny_sd15_dir, prompt="a red ball", seed=-1), "alice"))
    (made,) = first.outputs
    restored = ui.restore(str(made))
    assert restored.task == "generate" and restored.values["prompt"] == "a red ball"
    assert restored.values["seed"] == first.job.seed  # the seed chosen at random was recorded
    again = last(ui.run_form("generate", restored.values, "bob"))
    assert np.array_equal(np.asarray(open_image(again.outputs[0])), np.asarray(open_image(made)))
    assert again.outputs[0].read_bytes() == made.read_bytes()
    assert again.outputs[0].parent != made.parent  # each session has its own output folder


def test_the_launcher_refuses_an_exposed_address_without_a_password(capsys):
    from ui.__main__ import parse_args

    assert parse_args([]).host == "127.0.0.1"
    assert parse_args(["--host", "0.0.0.0", "--auth", "me:secret"]).auth == "me:secret"
    for argv in (["--host", "0.0.0.0"], ["--host", "192.168.1.5"], ["--auth", "no-colon"]):
        with pytest.raises(SystemExit) as exit_:
            parse_args(argv)
        assert exit_.value.code == 2
    assert "--auth USER:PASS" in capsys.readouterr().err


def test_a_record_slot_with_a_painted_mask_runs_the_clis_freecustom_job(ui, runner, tiny_sd15_dir, tmp_path):
    from studio.cli import app

    reference = tmp_path / "reference.png"
    Image.new("RGB", (SIZE, SIZE), (200, 40, 40)).save(reference)
    layer = np.zeros((SIZE, SIZE, 4), np.uint8)
    layer[16:48, 16:48, 3] = 255
    slot = {
        "opt.references.0.image": str(reference),
        "opt.references.0.caption": "a red square",
        "opt.references.0.mask": {"background": None, "layers": [layer], "composite": None},
    }
    final = last(ui.run_form("freecustom", form(tiny_sd15_dir, prompt="a red square on a hill", **slot), "alice"))
    assert final.outcome == "done", final.status
    (ui_out,) = final.outputs
    (spec,) = final.job.options["freecustom"]["references"]
    assert spec["concept"] is None and spec["caption"] == "a red square"
    cli_out = ui_out.parent / "cli.png"  # beside the UI's output: inputs are recorded relative to the output
    args = ["freecustom", "a red square on a hill", "--ref", str(reference), "--caption", "a red square"]
    args += ["--mask", spec["mask"], "--model", str(tiny_sd15_dir), "--seed", "3", "--steps", "2", "-g", "5"]
    args += ["-W", str(SIZE), "-H", str(SIZE), "--out", str(cli_out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_job(ui_out).job == read_job(cli_out).job
    assert ui_out.read_bytes() == cli_out.read_bytes()


def test_an_a1111_png_restores_into_the_generate_tab(ui, tmp_path):
    from studio.images import save_png

    text = "a red ball\nNegative prompt: blurry\nSteps: 7, Sampler: DDIM, CFG scale: 6.5, Seed: 42, Size: 64x64"
    made = save_png(Image.new("RGB", (8, 8)), tmp_path / "a1111.png", {"parameters": text})
    restored = ui.restore(str(made))
    assert restored.task == "generate"
    assert {k: restored.values[k] for k in ("prompt", "negative_prompt", "steps", "guidance", "seed", "width")} == {
        "prompt": "a red ball",
        "negative_prompt": "blurry",
        "steps": 7,
        "guidance": 6.5,
        "seed": 42,
        "width": 64,
    }
    assert restored.values["model"] == ui.models[0] and "not offered here" in restored.message
