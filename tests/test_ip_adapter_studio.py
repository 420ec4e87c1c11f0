"""The `ip_adapter` extra control through the studio CLI: it composes with a task via `--control`, its
output round-trips (`studio inspect` -> `studio run`, same bytes), and every bad input is one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pipelines.backbone import Backbone
from pipelines.ip_adapter import ImagePrompt, image_prompt_control
from pipelines.ip_adapter_weights import load_adapter
from pipelines.text_to_image import generate
from pipelines.tiny_models import tiny_sd15_pipeline
from studio.cli import app
from studio.jobs import Job
from tests.cli_results import ok, one_line_error, pixels
from tests.ip_adapter_files import adapter_state, family_unet, tiny_image_encoder, write_adapter
from tests.studio_inputs import write_malicious_pickle

COMMON = ["--model", "tiny-ip", "--device", "cpu", "--seed", "5", "--steps", "2", "-W", "64", "-H", "64"]
pytestmark = pytest.mark.usefixtures("quiet_cli_env")


@pytest.fixture(scope="module")
def ip_model_dir(tmp_path_factory):
    """The tiny SD1.5 model with a tiny CLIP vision tower as its image encoder, saved as a model folder."""
    pipe = tiny_sd15_pipeline()
    encoder, extractor = tiny_image_encoder()
    pipe.register_modules(image_encoder=encoder, feature_extractor=extractor)
    folder = tmp_path_factory.mktemp("models") / "tiny-ip"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture
def workdir(tmp_path, monkeypatch, ip_model_dir, tiny_sd15_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-ip").symlink_to(ip_model_dir, target_is_directory=True)
    (tmp_path / "tiny-sd15").symlink_to(tiny_sd15_dir, target_is_directory=True)
    write_adapter(tmp_path, family_unet("sd15"), "plus", seed=4, name="a.safetensors")
    pixels = np.random.RandomState(3).rand(48, 40, 3) * 255
    Image.fromarray(pixels.astype("uint8"), "RGB").save(tmp_path / "ref.png")
    mask = np.zeros((64, 64), dtype="uint8")
    mask[:, :32] = 255
    Image.fromarray(mask, "L").save(tmp_path / "left.png")
    return tmp_path


@pytest.mark.slow
def test_generate_with_an_image_prompt_equals_the_pipeline_call_and_round_trips(runner, workdir):
    control = "ip_adapter:file=a.safetensors,image=ref.png,scale=0.6,mask=left.png"
    ok(runner.invoke(app, ["generate", "a red ball", "--control", control, *COMMON, "--out", "ip.png"]))

    inspected = runner.invoke(app, ["inspect", "ip.png"])
    ok(inspected)
    job = Job.from_json(inspected.stdout)
    assert [(c.kind, c.options) for c in job.controls] == [
        ("ip_adapter", {"file": "a.safetensors", "image": "ref.png", "scale": 0.6, "mask": "left.png"})
    ]
    assert set(job.inputs) == {"a.safetensors", "ref.png", "left.png"}  # the adapter's content is recorded too
    (workdir / "job.json").write_text(inspected.stdout)
    ok(runner.invoke(app, ["run", "job.json", "--device", "cpu", "--out", "again.png"]))
    assert (workdir / "again.png").read_bytes() == (workdir / "ip.png").read_bytes()

    # Oracle: the pipeline called directly with the same image prompt (the mask as the studio reads it).
    from studio.masks import load_mask
    from studio.model_cache import ModelCache

    backbone = Backbone.from_pipeline(ModelCache().get("tiny-ip"))
    prompt = ImagePrompt(
        Image.open("ref.png").convert("RGB"), load_adapter("a.safetensors"), 0.6, load_mask("left.png")
    )
    expected = generate(
        backbone, "a red ball", num_inference_steps=2, width=64, height=64,
        generator=torch.Generator("cpu").manual_seed(5), controls=[image_prompt_control(backbone, [prompt])],
    ).images[0]  # fmt: skip
    assert np.array_equal(pixels("ip.png"), np.asarray(expected))
    ok(runner.invoke(app, ["generate", "a red ball", *COMMON, "--out", "plain.png"]))
    assert not np.array_equal(pixels("ip.png"), pixels("plain.png"))
    write_adapter(workdir, family_unet("sd15"), "plus", seed=9, name="a.safetensors")  # same name, other weights
    changed = one_line_error(runner.invoke(app, ["run", "job.json", "--device", "cpu", "--out", "third.png"]))
    assert "a.safetensors: not the file this job was made with" in changed


def _truncated(workdir):
    data = (workdir / "a.safetensors").read_bytes()
    (workdir / "bad.safetensors").write_bytes(data[: len(data) // 2])


def _missing_keys(workdir):
    state = {k: v for k, v in adapter_state(family_unet("sd15")).items() if not k.startswith("ip_adapter.")}
    save_file(state, str(workdir / "bad.safetensors"))


def _sdxl_adapter(workdir):
    write_adapter(workdir, family_unet("sdxl"), "base", name="bad.safetensors")


def _other_image_encoder(workdir):
    state = adapter_state(family_unet("sd15"))
    state["image_proj.proj.weight"] = torch.zeros(state["image_proj.proj.weight"].shape[0], 20)  # made for width 20
    save_file(state, str(workdir / "bad.safetensors"))


def _pickle(workdir):
    write_malicious_pickle(workdir / "bad.safetensors", workdir / "unpickled")


BAD_FILES = {
    "truncated": (_truncated, "is truncated"),
    "missing-keys": (_missing_keys, "no ip_adapter.{id}.to_k_ip keys"),
    "sdxl-on-sd15": (_sdxl_adapter, "cross_attention_dim) 64, but this model's UNet has 32"),
    "pickle": (_pickle, "refusing bad.safetensors: it is a pickle checkpoint"),
    "other-image-encoder": (
        _other_image_encoder,
        "image features of width 20, but this model's image encoder gives 24",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_adapter_file_is_one_line(runner, workdir, case):
    make, message = BAD_FILES[case]
    make(workdir)
    control = "ip_adapter:file=bad.safetensors,image=ref.png"
    line = one_line_error(runner.invoke(app, ["generate", "x", "--control", control, *COMMON, "--out", "o.png"]))
    assert message in line
    assert not (workdir / "unpickled").exists()


def test_an_unreadable_image_prompt_is_one_line(runner, workdir):
    (workdir / "ref.png").write_bytes(b"not an image at all")
    control = "ip_adapter:file=a.safetensors,image=ref.png"
    line = one_line_error(runner.invoke(app, ["generate", "x", "--control", control, *COMMON, "--out", "o.png"]))
    assert "ref.png" in line or "image" in line


def test_a_model_without_an_image_encoder_is_one_line(runner, workdir):
    control = "ip_adapter:file=a.safetensors,image=ref.png"
    args = ["generate", "x", "--control", control, *COMMON, "--model", "tiny-sd15", "--out", "o.png"]
    line = one_line_error(runner.invoke(app, args))
    assert "no image_encoder" in line


def _controls_of(args):
    """The extra controls of the job `studio generate "a red ball" ARGS` describes (parsed, not run)."""
    from studio.registry import default_registry
    from studio.task_commands import job_from_flags, task_command

    registry = default_registry()
    command = task_command(registry.tasks["generate"], registry)
    import typer.main

    params = typer.main.get_command_from_info(
        typer.models.CommandInfo(callback=command), pretty_exceptions_short=True, rich_markup_mode=None
    )
    context = params.make_context("generate", ["a red ball", *args], resilient_parsing=False)
    values = {p.name: context.params[p.name] for p in params.params}
    return [(c.kind, dict(c.options)) for c in job_from_flags(registry.tasks["generate"], registry, values).controls]


def test_the_plain_flags_say_the_same_job_as_control():
    """`--ip-adapter F --image-prompt IMG:S --image-prompt-mask M` is `--control ip_adapter:file=F,...`."""
    plain = _controls_of(
        ["--ip-adapter", "a.safetensors", "--image-prompt", "ref.png:0.6", "--image-prompt-mask", "left.png"]
    )
    spelled = _controls_of(["--control", "ip_adapter:file=a.safetensors,image=ref.png,scale=0.6,mask=left.png"])
    assert (
        plain
        == spelled
        == [("ip_adapter", {"file": "a.safetensors", "image": "ref.png", "scale": 0.6, "mask": "left.png"})]
    )
    two = _controls_of(["--ip-adapter", "a.safetensors", "--image-prompt", "x.png", "--image-prompt", "dir:y.png:0.3"])
    assert [c[1] for c in two] == [
        {"file": "a.safetensors", "image": "x.png"},
        {"file": "a.safetensors", "image": "dir:y.png", "scale": 0.3},
    ]  # one adapter for both; a tail that is not a number stays in the path
    assert _controls_of(["--ip-adapter", "a.safetensors", "--image-prompt", "c:d.png"])[0][1]["image"] == "c:d.png"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ip-adapter", "a.safetensors"], "--ip-adapter without --image-prompt"),
        (["--image-prompt", "ref.png"], "--image-prompt needs --ip-adapter"),
        (
            ["--ip-adapter", "a.safetensors", "--image-prompt", "a.png", "--image-prompt", "b.png",
             "--image-prompt", "c.png", "--image-prompt-mask", "l.png", "--image-prompt-mask", "r.png"],
            "got 2 --image-prompt-mask for 3 --image-prompt",
        ),
        (["--ip-adapter", "missing.safetensors", "--image-prompt", "ref.png"], "IP-Adapter file not found: missing.safetensors"),
    ],
)  # fmt: skip
def test_plain_flag_mistakes_are_one_line(runner, workdir, args, message):
    line = one_line_error(runner.invoke(app, ["generate", "x", *args, *COMMON, "--out", "o.png"]))
    assert message in line
