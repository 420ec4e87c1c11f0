"""Hostile and careless input through the CLI entry point, in process: one line, the right exit code, no
traceback, nothing written outside the output folder.

Each case builds its files in a fresh working folder and returns the argv. The table covers every case
of the hardening report (images, masks, model files and folders, options, job files, metadata, output
paths) plus their neighbours. A case that should succeed says so with exit code 0.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from studio.cli import app
from tests.studio_inputs import (
    BAD_IMAGES,
    bomb_png,
    image_bytes,
    png_bytes,
    write_malicious_pickle,
    write_safetensors_header,
    write_torch_zip,
    SD15_KEYS,
)

pytestmark = pytest.mark.usefixtures("quiet_cli_env")
TINY = ["--model", "tiny-sd15", "--device", "cpu"]


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], list[str]]  # makes the files it needs in the folder, returns the argv
    exit_code: int
    says: str = ""  # a fragment the one-line message must contain


def _png(folder: Path, name: str, size: tuple[int, int] = (64, 64), mode: str = "RGB") -> str:
    rng = np.random.default_rng(len(name))
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    image.save(folder / name)
    return name


def _bytes(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return name


def _mask(folder: Path, name: str, size: tuple[int, int] = (64, 64), fill: bool = True) -> str:
    mask = np.zeros((size[1], size[0]), np.uint8)
    if fill:
        mask[size[1] // 4 : 3 * size[1] // 4, size[0] // 4 : 3 * size[0] // 4] = 255
    Image.fromarray(mask).save(folder / name)
    return name


def _png_with_text(folder: Path, name: str, key: str, text: str, *, compressed: bool = False) -> str:
    info = PngImagePlugin.PngInfo()
    if compressed:
        info.add_text(key, text, zip=True)
    else:
        info.add_itxt(key, text)
    Image.new("RGB", (16, 16)).save(folder / name, pnginfo=info)
    return name


def _ztxt_bomb(folder: Path, name: str) -> str:
    """A PNG whose zTXt chunk inflates to 50 MB from a few KB."""
    import struct

    data = b"parameters\0\0" + zlib.compress(b"a" * 50_000_000, 9)
    chunk = struct.pack(">I", len(data)) + b"zTXt" + data + struct.pack(">I", zlib.crc32(b"zTXt" + data))
    png = png_bytes((16, 16))
    return _bytes(folder, name, png[:33] + chunk + png[33:])


def _job(folder: Path, name: str, text: str | bytes) -> str:
    (folder / name).write_bytes(text.encode() if isinstance(text, str) else text)
    return name


def _good_job(**changes) -> str:
    job = {"version": 1, "task": "generate", "model": "tiny-sd15", "prompt": "a cat", "seed": 1, "steps": 1}
    job.update(changes)
    return json.dumps(job)


def _hostile_folder(folder: Path, tiny: Path) -> str:
    import shutil

    model = folder / "hostile-model"
    shutil.copytree(tiny, model)
    index = {"metadata": {}, "weight_map": {"conv_in.weight": "diffusion_pytorch_model-00001.bin"}}
    (model / "unet" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    write_malicious_pickle(model / "unet" / "diffusion_pytorch_model-00001.bin", folder / "pwned")
    return "hostile-model"


def _rerun_with_changed_input(folder: Path) -> list[str]:
    """An invert output whose input has since been replaced by another picture of the same name."""
    from studio.cli import app as studio_app
    from typer.testing import CliRunner

    _png(folder, "base.png")
    made = CliRunner().invoke(studio_app, invert("base.png", "--out", "made.png"))
    assert made.exit_code == 0, made.output
    Image.new("RGB", (64, 64), (9, 9, 9)).save(folder / "base.png")
    return ["run", "made.png", "--device", "cpu"]


def invert(image: str, *extra: str) -> list[str]:
    return ["invert", image, *TINY, "--steps", "1", *extra]


def gen(*extra: str) -> list[str]:
    return ["generate", "a cat", *TINY, "--steps", "1", "--seed", "1", "--width", "64", "--height", "64", *extra]


CASES: list[Case] = [
    # --- images -------------------------------------------------------------------------------------------
    *[
        Case(f"image-{kind}", lambda d, k=kind: invert(_bytes(d, f"{k}.png", BAD_IMAGES[k]())), 2)
        for kind in BAD_IMAGES
    ],
    Case("image-tiff", lambda d: invert(_bytes(d, "x.tif", image_bytes("TIFF"))), 2, "TIFF"),
    Case("image-heif-header", lambda d: invert(_bytes(d, "x.heic", b"\0\0\0\x18ftypheic" + b"\0" * 64)), 2, "HEIF"),
    Case("image-8000-square-bomb", lambda d: invert(_bytes(d, "big.png", bomb_png(8000, 8000))), 2),
    Case("image-a-folder", lambda d: (d / "adir").mkdir() or invert("adir"), 2, "is a folder"),
    Case("image-missing", lambda d: invert("nothere.png"), 2, "no such file"),
    Case("image-text-named-png", lambda d: invert(_bytes(d, "t.png", b"hello")), 2, "not an image"),
    Case("image-jpeg-truncated", lambda d: invert(_bytes(d, "t.jpg", image_bytes("JPEG", (64, 64))[:200])), 2),
    Case("image-ztxt-bomb-inspect", lambda d: ["inspect", _ztxt_bomb(d, "z.png")], 2, "text metadata"),
    Case("image-palette-ok", lambda d: invert(_png(d, "p.png", mode="P")), 0),
    Case("image-grey-alpha-ok", lambda d: invert(_png(d, "la.png", mode="LA")), 0),
    Case("image-cmyk-jpeg-ok", lambda d: invert(_png(d, "c.jpg", mode="CMYK")), 0),
    # --- masks --------------------------------------------------------------------------------------------
    Case("mask-empty", lambda d: ["mutual", "a dog", "--image", _png(d, "a.png"), "--masked", "--source-mask",
                                  _mask(d, "m.png", fill=False), "--target-mask", _mask(d, "t.png"), *TINY], 2, "empty"),
    Case("mask-2x2", lambda d: ["mutual", "a dog", "--image", _png(d, "a.png"), "--masked", "--source-mask",
                                _mask(d, "m.png"), "--target-mask", _mask(d, "t.png", (2, 2)), *TINY], 2, "too small"),
    Case("mask-wrong-size", lambda d: ["mutual", "a dog", "--image", _png(d, "a.png"), "--masked", "--source-mask",
                                       _mask(d, "m.png", (32, 32)), "--target-mask", _mask(d, "t.png"), *TINY], 2,
         "does not match"),
    Case("mask-not-an-image", lambda d: ["freecustom", "a cat", "--ref", _png(d, "a.png"), "--mask",
                                         _bytes(d, "m.png", b"nope"), *TINY], 2, "not an image"),
    Case("mask-count-mismatch", lambda d: ["freecustom", "a cat", "--ref", _png(d, "a.png"), "--mask",
                                           _mask(d, "m.png"), "--mask", _mask(d, "n.png"), *TINY], 2, "--mask"),
    # --- models -------------------------------------------------------------------------------------------
    *[
        Case(f"model-pickle-{suffix}", lambda d, s=suffix: [*gen()[:2], "--model",
             write_malicious_pickle(d / f"m{s}", d / "pwned").name], 2, "pickle")
        for suffix in (".ckpt", ".bin", ".pt", ".safetensors")
    ],
    Case("model-torch-zip", lambda d: ["generate", "x", "--model", write_torch_zip(d / "m.safetensors").name], 2),
    Case("model-unknown", lambda d: ["generate", "x", "--model", "no-such-model"], 2, "unknown model reference"),
    Case("model-hub-offline", lambda d: ["generate", "x", "--model", "someone/some-model"], 2, "offline"),
    Case("model-folder-without-index", lambda d: (d / "empty-model").mkdir() or ["generate", "x", "--model",
                                                                                  "empty-model"], 2, "model_index"),
    Case("model-lora-as-checkpoint", lambda d: ["generate", "x", "--model", write_safetensors_header(
        d / "l.safetensors", ["lora_unet_x.lora_down.weight"]).name], 2, "LoRA"),
    Case("model-truncated-safetensors", lambda d: ["generate", "x", "--model", write_safetensors_header(
        d / "t.safetensors", SD15_KEYS, truncate_data=True).name, "--device", "cpu"], 1),
    # --- options ------------------------------------------------------------------------------------------
    Case("steps-zero", lambda d: gen("--steps", "0"), 2),
    Case("steps-huge", lambda d: gen("--steps", "100000"), 2),
    Case("width-not-multiple", lambda d: gen("--width", "70"), 2),
    Case("seed-negative", lambda d: gen("--seed", "-1"), 2),
    Case("seed-too-big", lambda d: gen("--seed", str(2**70)), 2),
    Case("guidance-negative", lambda d: gen("--guidance", "-3"), 2),
    Case("device-unknown", lambda d: gen("--device", "tpu"), 2),
    Case("precision-unknown", lambda d: gen("--precision", "fp8"), 2),
    Case("memory-unknown", lambda d: gen("--memory", "lots"), 2),
    Case("freecustom-no-ref", lambda d: ["freecustom", "a cat", *TINY], 2),
    Case("visctrl-passes-a-million", lambda d: ["visctrl", _png(d, "a.png"), "--reference", _png(d, "b.png"),
                                                "--passes", "1000000", *TINY], 2, "between 1 and 20"),
    Case("mutual-levels-99", lambda d: ["mutual", "a dog", "--levels", "99", *TINY], 2, "between 1 and 3"),
    Case("mutual-levels-negative", lambda d: ["mutual", "a dog", "--levels", "-1", *TINY], 2, "between 1 and 3"),
    Case("size-8192-square", lambda d: gen("--width", "8192", "--height", "8192"), 2, "GiB at its peak"),
    Case("invert-phone-photo-ok", lambda d: invert(_png(d, "phone.jpg", (4032, 3024))), 0),
    Case("visctrl-view-mask-count", lambda d: ["visctrl", _png(d, "a.png"), "--reference", _png(d, "b.png"),
                                               "--view", _png(d, "c.png"), "--view-mask", _mask(d, "m.png"),
                                               "--view-mask", _mask(d, "n.png"), *TINY], 2, "--view-mask"),
    # --- job files ----------------------------------------------------------------------------------------
    Case("job-100000-deep", lambda d: ["run", _job(d, "j.json", '{"options":' + "[" * 100_000 + "]" * 100_000 + "}")],
         2, "nested"),
    Case("job-5000-digit-int", lambda d: ["run", _job(d, "j.json", _good_job()[:-1] + ', "width": ' + "9" * 5000 + "}")],
         2),
    Case("job-array", lambda d: ["run", _job(d, "j.json", "[1, 2]")], 2, "object"),
    Case("job-bom-runs", lambda d: ["run", _job(d, "j.json", "\ufeff" + _good_job())], 0),
    Case("job-not-utf8", lambda d: ["run", _job(d, "j.json", b'{"prompt": "\xff\xfe"}')], 2),
    Case("job-newer-version", lambda d: ["run", _job(d, "j.json", _good_job(version=99))], 2, "upgrade"),
    Case("job-unknown-field", lambda d: ["run", _job(d, "j.json", _good_job(colour="red"))], 2, "colour"),
    Case("job-unknown-task", lambda d: ["run", _job(d, "j.json", _good_job(task="dance"))], 2, "dance"),
    Case("job-nan", lambda d: ["run", _job(d, "j.json", _good_job()[:-1] + ', "guidance": NaN}')], 2),
    Case("job-empty-file", lambda d: ["run", _job(d, "j.json", b"")], 2),
    Case("job-missing-image", lambda d: ["run", _job(d, "j.json", _good_job(task="invert", image="gone.png"))], 2,
         "gone.png"),
    Case("job-a-folder", lambda d: (d / "jobs").mkdir() or ["run", "jobs"], 2),
    Case("job-input-changed-since", lambda d: _rerun_with_changed_input(d), 2, "not the file this job was made with"),
    # --- metadata -----------------------------------------------------------------------------------------
    Case("inspect-10mb-parameters", lambda d: ["inspect", _png_with_text(d, "p.png", "parameters", "a" * 10_000_000)],
         2, "limit"),
    Case("inspect-deep-studio-job", lambda d: ["inspect", _png_with_text(d, "p.png", "studio_job",
                                                                         "[" * 100_000 + "]" * 100_000)], 2, "nested"),
    Case("inspect-no-metadata", lambda d: ["inspect", _png(d, "plain.png")], 2, "no studio job"),
    Case("inspect-bad-a1111-size", lambda d: ["inspect", _png_with_text(
        d, "p.png", "parameters", "a cat\nSteps: 5, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: huge")], 2, "Size"),
    Case("inspect-a1111-no-settings", lambda d: ["inspect", _png_with_text(
        d, "p.png", "parameters", "a cat\nSteps: 5, Sampler: DDIM, Size: huge")], 2, "Steps"),
    Case("inspect-a1111-ok", lambda d: ["inspect", _png_with_text(
        d, "p.png", "parameters", "a cat\nSteps: 5, Sampler: Euler a, CFG scale: 7, Seed: 3")], 0),
    # --- output paths -------------------------------------------------------------------------------------
    Case("out-empty", lambda d: gen("--out", ""), 2, "--out is empty"),
    Case("out-parent-is-a-file", lambda d: _bytes(d, "f", b"x") and gen("--out", "f/o.png"), 2, "not a folder"),
    Case("out-not-png", lambda d: gen("--out", "o.jpg"), 2, "PNG"),
    Case("out-name-too-long", lambda d: gen("--out", "n" * 300 + ".png"), 2, "at most 255"),
    Case("out-existing-file", lambda d: _bytes(d, "o.png", b"keep") and gen("--out", "o.png"), 2, "already exists"),
    Case("out-input-is-output", lambda d: invert(_png(d, "in.png"), "--out", "in.png"), 2),
    Case("out-existing-folder-ok", lambda d: (d / "adir").mkdir() or gen("--out", "adir"), 0),
    Case("out-folder-named-png-ok", lambda d: (d / "x.png").mkdir() or gen("--out", "x.png"), 0),
    Case("out-254-name-ok", lambda d: gen("--out", "n" * 250 + ".png"), 0),
]


def _tree(folder: Path) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for root, dirs, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            if not path.is_symlink():
                found[str(path.relative_to(folder))] = path.read_bytes() if path.stat().st_size < 1_000_000 else None
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_gets_one_line_and_the_right_exit_code(case, runner, tmp_path, monkeypatch, tiny_sd15_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-sd15").symlink_to(tiny_sd15_dir, target_is_directory=True)
    argv = case.build(tmp_path)
    before = _tree(tmp_path)
    result = runner.invoke(app, argv)
    assert result.exit_code == case.exit_code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert not (tmp_path / "pwned").exists()
    after = _tree(tmp_path)
    changed = {name for name in after if before.get(name, b"new") != after[name]}
    removed = set(before) - set(after)
    assert not removed
    if case.exit_code:
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
        assert case.says in errors[0]
        assert not changed, f"a refused run wrote {sorted(changed)}"
    else:
        assert all(name.endswith(".png") for name in changed) and len(changed) <= 1, sorted(changed)


def test_the_table_has_at_least_sixty_cases():
    assert len(CASES) >= 60
