"""Metadata both ways: other tools' images read into jobs (A1111 PNG, JPEG and WebP EXIF, ComfyUI), a
studio PNG read back by an independent parser (sd-parsers), model names resolved against the model
folders, and `studio run IMAGE` with overrides. The fixtures are built here, as each tool writes them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from studio.cli import app
from studio.errors import MetadataError, UnknownModelReferenceError
from studio.metadata import read_job
from studio.model_dirs import MODEL_DIRS_ENV, NamedModel, find_model, missing_model_error
from studio.model_hash import model_hash

pytestmark = pytest.mark.usefixtures("quiet_cli_env")

A1111_TEXT = (
    "a (red:1.2) star, on the left\n"
    "Negative prompt: blurry, dark\n"
    "Steps: 7, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 64x48, "
    "Model hash: 0123456789, Model: v1-5-pruned, Version: v1.9.4"
)
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286


def _png(path: Path, chunks: dict[str, str]) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", (16, 16), "gray").save(path, pnginfo=info)
    return path


def _with_user_comment(path: Path, fmt: str, comment: bytes) -> Path:
    """A JPEG or WebP whose EXIF UserComment holds the text, as A1111 writes it."""
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = comment
    Image.new("RGB", (16, 16), "gray").save(path, fmt, exif=exif)
    return path


def _check_a1111(job) -> None:
    assert job.prompt == "a (red:1.2) star, on the left"
    assert job.negative_prompt == "blurry, dark"
    assert (job.steps, job.guidance, job.seed, job.width, job.height) == (7, 6.5, 1234, 64, 48)
    assert job.sampler == "dpmpp_2m_karras"


def test_a1111_png_jpeg_and_webp_are_read_into_jobs(tmp_path):
    png = _png(tmp_path / "a.png", {"parameters": A1111_TEXT})
    jpeg = _with_user_comment(tmp_path / "a.jpg", "JPEG", b"UNICODE\0" + A1111_TEXT.encode("utf-16-be"))
    webp = _with_user_comment(tmp_path / "a.webp", "WEBP", b"ASCII\0\0\0" + A1111_TEXT.encode("ascii"))
    for path in (png, jpeg, webp):
        found = read_job(path)
        assert found.source == "a1111", path.name
        _check_a1111(found.job)
        assert found.missing_model == NamedModel("v1-5-pruned", "0123456789")  # no model folder holds it


def comfyui_prompt() -> dict:
    """A ComfyUI API graph: checkpoint -> KSampler <- two CLIPTextEncode, an empty latent, decode, save."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a blue circle", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "noise", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 77,
                "steps": 9,
                "cfg": 4.5,
                "sampler_name": "euler_ancestral",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


@pytest.mark.parametrize("with_workflow", [False, True])
def test_a_comfyui_png_is_read_into_a_job(tmp_path, with_workflow):
    from studio.foreign_metadata import comfyui_workflow_of

    chunks = {"prompt": json.dumps(comfyui_prompt())}
    if with_workflow:  # as ComfyUI saves it: the UI graph's links beside the API graph
        chunks["workflow"] = json.dumps(comfyui_workflow_of(comfyui_prompt()) | {"nodes": []})
    found = read_job(_png(tmp_path / "comfy.png", chunks))
    job = found.job
    assert found.source == "comfyui"
    assert (job.prompt, job.negative_prompt) == ("a blue circle", "noise")
    assert (job.steps, job.guidance, job.seed, job.width, job.height) == (9, 4.5, 77, 64, 48)
    assert job.sampler == "euler_a"
    assert found.missing_model == NamedModel("v1-5-pruned.safetensors", None)


def _fake_checkpoint(path: Path) -> Path:
    """A minimal safetensors file (one tensor): enough to be found and hashed, never loaded here."""
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path))
    return path


def test_model_names_resolve_by_name_or_hash_with_a_clear_error_otherwise(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    checkpoint = _fake_checkpoint(folder / "v1-5-pruned.safetensors")
    digest = model_hash(checkpoint, cache_file=tmp_path / "hashes.json")
    assert find_model(NamedModel("v1-5-pruned"), [folder]) == checkpoint
    assert find_model(NamedModel("v1-5-pruned.safetensors"), [folder]) == checkpoint  # ComfyUI's ckpt_name
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert find_model(NamedModel("renamed", digest), [folder]) == checkpoint
    assert find_model(NamedModel("other", "ffffffffff"), [folder]) is None
    error = missing_model_error(NamedModel("other", "ffffffffff"), [folder])
    assert isinstance(error, UnknownModelReferenceError)
    assert "'other'" in str(error) and str(folder) in str(error) and "\n" not in str(error)

    monkeypatch.setenv(MODEL_DIRS_ENV, str(folder))
    found = read_job(_png(tmp_path / "a.png", {"parameters": A1111_TEXT.replace("0123456789", digest)}))
    assert found.job.model == str(checkpoint) and found.missing_model is None


def test_studio_run_of_an_image_whose_model_is_nowhere_names_it(tmp_path, monkeypatch, runner):
    monkeypatch.setenv(MODEL_DIRS_ENV, str(tmp_path / "empty"))
    image = _png(tmp_path / "a.png", {"parameters": A1111_TEXT})
    result = runner.invoke(app, ["run", str(image), "--out", str(tmp_path / "o.png")])
    assert result.exit_code == 2
    assert "'v1-5-pruned'" in result.output and "empty" in result.output and "--model" in result.output
    assert not (tmp_path / "o.png").exists()


def test_bad_metadata_is_one_line(tmp_path):
    with pytest.raises(MetadataError, match="Size"):
        read_job(_png(tmp_path / "a.png", {"parameters": A1111_TEXT.replace("64x48", "wide")}))
    with pytest.raises(MetadataError, match="no studio job"):
        read_job(_png(tmp_path / "b.png", {"Comment": "hello"}))


def test_a_studio_png_is_read_back_by_sd_parsers_and_studio_run_overrides(tmp_path, runner):
    """sd-parsers (independent of our reader) reads every A1111 field back from a studio PNG; `studio run
    IMAGE` with overrides makes the job the flags say."""
    from sd_parsers import ParserManager

    first = tmp_path / "first.png"
    made = runner.invoke(
        app,
        ["generate", "a red star", "-n", "blurry", "--seed", "5", "--steps", "2", "-g", "6", "--sampler", "Euler",
         "--device", "cpu", "--out", str(first)],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    with Image.open(first) as image:
        info = ParserManager().parse(image)
    (sampler,) = info.samplers
    assert (info.full_prompt, info.full_negative_prompt) == ("a red star", "blurry")
    assert sampler.name == "Euler"
    assert sampler.parameters == {"steps": "2", "cfg_scale": "6", "seed": "5"}
    assert info.metadata["Size"] == "64x64"
    assert sampler.model.name == "toyworld"
    assert sampler.model.hash == model_hash(_toyworld())

    second = tmp_path / "second.png"
    flags = ["--seed", "9", "--steps", "3", "--width", "80", "--height", "48", "--sampler", "DPM++ 2M", "-g", "3"]
    rerun = runner.invoke(app, ["run", str(first), *flags, "--device", "cpu", "--out", str(second)])
    assert rerun.exit_code == 0, rerun.output
    job = read_job(second).job
    assert (job.seed, job.steps, job.width, job.height, job.sampler, job.guidance) == (9, 3, 80, 48, "dpmpp_2m", 3.0)
    assert (job.prompt, job.negative_prompt) == ("a red star", "blurry")
    with Image.open(second) as image:
        assert image.size == (80, 48)


def _toyworld() -> Path:
    from studio.model_refs import resolve_model_ref

    return Path(resolve_model_ref("toyworld").location)


def test_an_input_inside_the_output_folder_is_stored_relative_to_the_output(tmp_path, runner, monkeypatch):
    """The output folder moves with its input; `studio run` finds the input beside the output, and a
    missing input is named."""
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(tmp_path)  # the working folder is not the output's
    source = Image.new("RGB", (64, 64), "white")
    source.paste(Image.new("RGB", (24, 24), "red"), (20, 20))
    source.save(work / "in.png")
    made = runner.invoke(app, ["invert", str(work / "in.png"), "--steps", "2", "--device", "cpu",
                               "--out", str(work / "out.png")])  # fmt: skip
    assert made.exit_code == 0, made.output
    job = read_job(work / "out.png").job
    assert job.image == "in.png" and set(job.inputs) == {"in.png"}

    printed = runner.invoke(app, ["inspect", "work/out.png"])  # as found from the working folder
    assert printed.exit_code == 0 and json.loads(printed.stdout)["image"] == "work/in.png"

    moved = tmp_path / "moved"
    shutil.move(work, moved)
    again = runner.invoke(app, ["run", str(moved / "out.png"), "--device", "cpu", "--out", str(moved / "again.png")])
    assert again.exit_code == 0, again.output
    assert Image.open(moved / "again.png").tobytes() == Image.open(moved / "out.png").tobytes()

    (moved / "in.png").unlink()
    gone = runner.invoke(app, ["run", str(moved / "out.png"), "--device", "cpu", "--out", str(moved / "x.png")])
    assert gone.exit_code == 2 and "in.png" in gone.output and "no such file" in gone.output


def test_exif_usercomment_bytes_round_trip_helper():
    """The fixture's EXIF really carries the comment (guards the fixtures above against a Pillow change)."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"ASCII\0\0\0hello"
    Image.new("RGB", (4, 4)).save(buffer, "JPEG", exif=exif)
    assert Image.open(buffer).getexif().get_ifd(EXIF_IFD)[USER_COMMENT].endswith(b"hello")
