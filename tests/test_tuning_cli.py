"""`studio train` and the tuned files on the command line: a short run writes the file and its report, the file
composes with generation (its name and hash in the output, `studio run` re-creates it), and every bad input is
one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.cli import app
from tests.studio_inputs import write_malicious_pickle
from tests.tuning_helpers import write_concept_folder

pytestmark = pytest.mark.usefixtures("quiet_cli_env")
GEN = ["--steps", "2", "--seed", "3"]


def one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output


def train_args(images: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "lora",
        "--images",
        str(images),
        "--token",
        "sks",
        "--class",
        "star",
        "--steps",
        "2",
        "--model",
        str(model),
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_sd15_dir):
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("train")
    images = write_concept_folder(root / "images")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (images / "tiny.png").write_bytes((images / "img_0.png").read_bytes())
    from PIL import Image

    Image.new("RGB", (8, 8)).save(images / "tiny.png")
    result = CliRunner().invoke(app, train_args(images, tiny_sd15_dir, root / "out"))
    return root, result


@pytest.mark.slow
def test_train_lora_writes_the_file_and_a_report_skipping_bad_images(trained_run):
    root, result = trained_run
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: skipped")]
    assert any("broken.png" in n for n in notes) and any("tiny.png: 8x8 is too small" in n for n in notes), notes
    report = json.loads((root / "out" / "report.json").read_text())
    assert report["steps"] == 2 and len(report["loss_curve"]) == 2 and report["parameters"] > 0
    assert Path(report["file"]).is_file() and len(report["images"]) == 3
    assert set(report) >= {"train_seconds", "parameter_fraction", "file_hash", "refused", "seed"}


@pytest.mark.slow
def test_generate_with_the_trained_lora_records_its_hash_and_reruns(trained_run, tiny_sd15_dir, runner, tmp_path):
    """The output names the LoRA and its content hash; `studio run` of the output re-creates the same bytes."""
    root, _ = trained_run
    lora = json.loads((root / "out" / "report.json").read_text())["file"]
    out = root / "out" / "a.png"  # beside the LoRA: the job records it relative to the output
    args = ["generate", "a sks star", "--model", str(tiny_sd15_dir), *GEN, "--lora", f"{lora}:0.7", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    job = json.loads(runner.invoke(app, ["inspect", str(out)]).stdout)
    assert job["controls"] == [
        {"kind": "lora", "options": {"file": job["controls"][0]["options"]["file"], "scale": 0.7}}
    ]
    from studio.input_hashes import content_hash

    assert content_hash(lora) in job["inputs"].values()
    again = tmp_path / "b.png"
    rerun = runner.invoke(app, ["run", str(out), "--model", str(tiny_sd15_dir), "--out", str(again)])
    assert rerun.exit_code == 0, rerun.output
    import numpy as np
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))


def test_empty_folder(runner, tmp_path):
    (tmp_path / "images").mkdir()
    one_line_error(runner.invoke(app, train_args(tmp_path / "images", Path("toyworld"), tmp_path / "o")), "no images")


def test_no_usable_image(runner, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"not an image")
    write_malicious_pickle(images / "b.png", tmp_path / "pwned")
    result = runner.invoke(app, train_args(images, Path("toyworld"), tmp_path / "o"))
    one_line_error(result, "no usable concept image")
    assert not (tmp_path / "pwned").exists()


def test_class_word_that_tokenizes_to_nothing(runner, tmp_path):
    images = write_concept_folder(tmp_path / "images")
    args = train_args(images, Path("toyworld"), tmp_path / "o")
    args[args.index("star")] = "  "
    one_line_error(runner.invoke(app, args), "--class is empty")


@pytest.mark.parametrize(
    "flag, value, message",
    [("--rank", "0", "rank must be between 1 and 1024"), ("--lr", "2", "learning_rate must be between 0.0 and 1.0")],
)
def test_a_recipe_setting_out_of_its_range_is_one_line(runner, tmp_path, flag, value, message):
    """The recipe's flags take their ranges from its settings (`pipelines.tuning.settings`)."""
    images = write_concept_folder(tmp_path / "images")
    one_line_error(runner.invoke(app, [*train_args(images, Path("toyworld"), tmp_path / "o"), flag, value]), message)
    assert not (tmp_path / "o").exists()


def test_pickle_lora_is_refused_unread(runner, tmp_path, tiny_sd15_dir):
    evil = write_malicious_pickle(tmp_path / "evil.safetensors", tmp_path / "pwned")
    result = runner.invoke(app, ["generate", "a", "--model", str(tiny_sd15_dir), *GEN, "--lora", str(evil)])
    one_line_error(result, "pickle")
    assert not (tmp_path / "pwned").exists()


def test_lag_without_residuals(runner, tiny_sd15_dir):
    one_line_error(runner.invoke(app, ["generate", "a", "--model", str(tiny_sd15_dir), *GEN, "--lag"]), "--residuals")


@pytest.mark.slow
def test_sdxl_lora_on_an_sd15_model(runner, tmp_path, tiny_sd15_dir):
    from pipelines.tuning.lora import LoraRecipe
    from tests.tuning_helpers import trained

    backbone, _ = trained(LoraRecipe(), family="sdxl", steps=1)
    path = LoraRecipe().save(backbone, tmp_path / "xl.safetensors", {})
    result = runner.invoke(app, ["generate", "a", "--model", str(tiny_sd15_dir), *GEN, "--lora", str(path)])
    one_line_error(result, "does not fit this model")


@pytest.mark.slow
def test_prior_preservation_generates_class_images_once(tmp_path, tiny_sd15_dir, monkeypatch):
    """Class images come from the model itself, cached by model, prompt and seed; the prior term is reported."""
    from studio.model_cache import ModelCache
    from studio.training.job import TrainRequest, run_training

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    images = write_concept_folder(tmp_path / "images")
    options = {"prior_preservation": True, "class_images": 2}
    request = TrainRequest(
        recipe="lora",
        images=images,
        token="sks",
        cls="star",
        out=tmp_path / "out",
        steps=1,
        model=str(tiny_sd15_dir),
        options=options,
        prompt="a {token} {cls}",
    )
    report = run_training(request, ModelCache())
    assert len(report["extra_curves"]["prior_loss"]) == 1
    cached = sorted((tmp_path / "cache" / "diffusion-studio" / "class-images").glob("*/*.png"))
    assert len(cached) == 2
    stamps = [p.stat().st_mtime_ns for p in cached]
    run_training(TrainRequest(**{**request.__dict__, "out": tmp_path / "out2"}), ModelCache())
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # read back, not generated again
