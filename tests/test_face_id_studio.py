"""The `face_id` extra control through the studio CLI: `--face-adapter F --face IMG --face-models DIR` runs,
records the adapter's and the face's hashes, round-trips (`studio inspect` -> `studio run`, same bytes),
equals the pipeline called directly, and every bad input (no face, two faces, no face models, the wrong kind
of adapter) is one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("insightface", reason="FaceID needs insightface (the `faces` extra)")
pytest.importorskip("onnxruntime", reason="FaceID needs onnxruntime (the `faces` extra)")
pytest.importorskip("onnx", reason="the tiny face models are built with onnx")

from studio.cli import app
from studio.jobs import Job
from studio.tasks.face_id import FACE_MODELS_ENV
from tests.cli_results import ok, one_line_error, pixels
from tests.face_models import face_picture, write_face_models
from tests.faceid_files import write_faceid
from tests.ip_adapter_files import family_unet, write_adapter

COMMON = ["--model", "tiny-sd15", "--device", "cpu", "--seed", "5", "--steps", "2", "-W", "64", "-H", "64"]
pytestmark = pytest.mark.usefixtures("quiet_cli_env")


@pytest.fixture(scope="module")
def face_dir(tmp_path_factory):
    return write_face_models(tmp_path_factory.mktemp("faces") / "tiny_buffalo")


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_sd15_dir, face_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(FACE_MODELS_ENV, raising=False)
    (tmp_path / "tiny-sd15").symlink_to(tiny_sd15_dir, target_is_directory=True)
    (tmp_path / "faces").symlink_to(face_dir, target_is_directory=True)
    write_faceid(tmp_path, family_unet("sd15"), "faceid", seed=3, name="faceid.safetensors")
    face_picture([(64, 64)], identity=5).save(tmp_path / "face.png")
    face_picture([]).save(tmp_path / "noface.png")
    face_picture([(32, 64), (96, 64)]).save(tmp_path / "two.png")
    return tmp_path


@pytest.mark.slow
def test_a_face_prompt_runs_round_trips_and_equals_the_pipeline_call(runner, workdir, monkeypatch):
    args = ["--face-adapter", "faceid.safetensors", "--face", "face.png:0.8", "--face-models", "faces"]
    ok(runner.invoke(app, ["generate", "a portrait", *args, *COMMON, "--out", "f.png"]))
    inspected = runner.invoke(app, ["inspect", "f.png"])
    ok(inspected)
    job = Job.from_json(inspected.stdout)
    assert [(c.kind, c.options) for c in job.controls] == [
        ("face_id", {"file": "faceid.safetensors", "image": "face.png", "scale": 0.8, "models": "faces"})
    ]
    assert set(job.inputs) == {"faceid.safetensors", "face.png", "faces"}  # adapter, face and face models
    (workdir / "job.json").write_text(inspected.stdout)
    ok(runner.invoke(app, ["run", "job.json", "--device", "cpu", "--out", "again.png"]))
    assert (workdir / "again.png").read_bytes() == (workdir / "f.png").read_bytes()

    # Oracle: the pipeline called directly with the same face prompt.
    from pipelines.backbone import Backbone
    from pipelines.faces import load_face_models
    from pipelines.ip_adapter_faceid import FacePrompt
    from pipelines.ip_adapter_weights import load_adapter
    from pipelines.text_to_image import generate
    from studio.model_cache import ModelCache

    backbone = Backbone.from_pipeline(ModelCache().get("tiny-sd15"))
    prompt = FacePrompt(Image.open("face.png"), load_adapter("faceid.safetensors"), load_face_models("faces"), 0.8)
    expected = generate(
        backbone, "a portrait", num_inference_steps=2, width=64, height=64,
        generator=torch.Generator("cpu").manual_seed(5), image_prompts=[prompt],
    ).images[0]  # fmt: skip
    assert np.array_equal(pixels("f.png"), np.asarray(expected))
    ok(runner.invoke(app, ["generate", "a portrait", *COMMON, "--out", "plain.png"]))
    assert not np.array_equal(pixels("f.png"), pixels("plain.png"))
    # The face models may come from the environment instead.
    monkeypatch.setenv(FACE_MODELS_ENV, str(workdir / "faces"))
    args = ["--face-adapter", "faceid.safetensors", "--face", "face.png:0.8"]
    ok(runner.invoke(app, ["generate", "a portrait", *args, *COMMON, "--out", "env.png"]))
    assert np.array_equal(pixels("env.png"), pixels("f.png"))


@pytest.mark.slow
def test_a_job_made_with_other_face_models_is_refused(runner, workdir, face_dir):
    """The face models decide the embedding, so `studio run` with a changed folder must say so, not redraw."""
    import shutil

    shutil.copytree(face_dir, workdir / "mine")
    args = ["--face-adapter", "faceid.safetensors", "--face", "face.png", "--face-models", "mine"]
    ok(runner.invoke(app, ["generate", "a portrait", *args, *COMMON, "--out", "f.png"]))
    inspected = runner.invoke(app, ["inspect", "f.png"])
    (workdir / "job.json").write_text(inspected.stdout)
    recorded = Job.from_json(inspected.stdout).inputs["mine"]
    model = sorted((workdir / "mine").iterdir())[0]
    model.write_bytes(model.read_bytes() + b"\0")  # another file of the same name
    line = one_line_error(runner.invoke(app, ["run", "job.json", "--device", "cpu", "--out", "again.png"]))
    assert "mine: not the file this job was made with" in line and f"the job recorded {recorded}" in line
    assert not (workdir / "again.png").exists()


def _sd_adapter(workdir):
    write_adapter(workdir, family_unet("sd15"), "base", name="plain.safetensors")


BAD = {
    "no-face": (["--face", "noface.png"], "face_id: no face found in noface.png"),
    "two-faces": (["--face", "two.png"], "face_id: 2 faces found in two.png: FaceID needs one"),
    "no-models": (["--face", "face.png", "--face-models", None], f"no face models: give --face-models DIR or set {FACE_MODELS_ENV}"),
    "missing-models": (["--face", "face.png", "--face-models", "nowhere"], "face model folder not found"),
    "not-faceid": (["--face", "face.png", "--face-adapter", "plain.safetensors"], "plain.safetensors is not a FaceID adapter"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_face_inputs_are_one_line(runner, workdir, case):
    _sd_adapter(workdir)
    extra, message = BAD[case]
    args = {"--face-adapter": "faceid.safetensors", "--face-models": "faces"}
    flags = dict(zip(extra[::2], extra[1::2], strict=True))
    args.update(flags)
    argv = [part for flag, value in args.items() if value is not None for part in (flag, value)]
    line = one_line_error(runner.invoke(app, ["generate", "x", *argv, *COMMON, "--out", "o.png"]))
    assert message in line


def test_a_faceid_file_as_an_image_prompt_is_one_line(runner, workdir):
    args = ["--ip-adapter", "faceid.safetensors", "--image-prompt", "face.png"]
    line = one_line_error(runner.invoke(app, ["generate", "x", *args, *COMMON, "--out", "o.png"]))
    assert "faceid.safetensors is a FaceID adapter: give a face prompt (--face-adapter, --face)" in line
