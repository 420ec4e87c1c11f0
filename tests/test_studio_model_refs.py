"""Model references (studio/model_refs.py, checkpoints.py, loading.py, model_cache.py).

Files are judged by content, never by extension; pickle is refused and never unpickled (a malicious
pickle that would create a marker file proves it); a local diffusers folder loads with DDIM.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from studio.checkpoints import CheckpointFamily, FileKind, checkpoint_family, sniff_weights_file
from studio.errors import (
    ModelLoadError,
    PickleCheckpointError,
    UnknownModelReferenceError,
    UnsupportedModelError,
)
from studio.loading import _safetensors_named
from studio.model_cache import ModelCache
from studio.model_refs import ModelKind, resolve_model_ref
from tests.studio_inputs import (
    INPAINT_SHAPES,
    LORA_KEYS,
    SD15_KEYS,
    SDXL_KEYS,
    SDXL_REFINER_KEYS,
    write_malicious_pickle,
    write_safetensors_header,
    write_torch_zip,
)

UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


def test_unknown_reference_is_one_clear_line():
    with pytest.raises(UnknownModelReferenceError) as info:
        resolve_model_ref("foo")
    assert str(info.value) == (
        "unknown model reference 'foo': not a local folder, .safetensors file, or reachable hub id"
    )


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt", ".bin", ".pt"])
def test_pickle_is_refused_by_content_whatever_its_name(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = write_malicious_pickle(tmp_path / f"model{suffix}", marker)
    assert sniff_weights_file(path) is FileKind.PICKLE
    with pytest.raises(PickleCheckpointError) as info:
        resolve_model_ref(str(path))
    message = str(info.value)
    assert "safetensors" in message and "\n" not in message and path.name in message
    assert not marker.exists()


def test_torch_zip_checkpoint_is_refused(tmp_path):
    path = write_torch_zip(tmp_path / "model.safetensors")
    assert sniff_weights_file(path) is FileKind.TORCH_ZIP
    with pytest.raises(PickleCheckpointError, match="zip"):
        resolve_model_ref(str(path))


@pytest.mark.parametrize("keys, family", [(SD15_KEYS, CheckpointFamily.SD), (SDXL_KEYS, CheckpointFamily.SDXL)])
def test_safetensors_named_ckpt_is_accepted_as_safetensors(tmp_path, keys, family):
    path = write_safetensors_header(tmp_path / "model.ckpt", keys)
    ref = resolve_model_ref(str(path))
    assert (ref.kind, ref.family) == (ModelKind.SINGLE_FILE, family)


def test_family_is_read_from_the_header_alone(tmp_path):
    # The data section is missing: any reader that touched tensor data would fail.
    path = write_safetensors_header(tmp_path / "big.safetensors", SDXL_KEYS, truncate_data=True)
    assert checkpoint_family(path) is CheckpointFamily.SDXL


@pytest.mark.parametrize("keys, fragment", [(SDXL_REFINER_KEYS, "refiner"), (LORA_KEYS, "LoRA")])
def test_non_base_checkpoints_are_refused(tmp_path, keys, fragment):
    path = write_safetensors_header(tmp_path / "x.safetensors", keys)
    with pytest.raises(UnsupportedModelError, match=fragment):
        resolve_model_ref(str(path))


def test_inpainting_checkpoint_is_refused_from_its_header_shapes(tmp_path):
    path = write_safetensors_header(tmp_path / "inpaint.safetensors", SD15_KEYS, shapes=INPAINT_SHAPES)
    with pytest.raises(UnsupportedModelError, match="9 input channels"):
        resolve_model_ref(str(path))


@pytest.mark.parametrize("content", [b"", b"hello world, not weights", b"\xff" * 64])
def test_files_that_are_not_safetensors_are_refused(tmp_path, content):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(UnsupportedModelError, match="safetensors"):
        resolve_model_ref(str(path))


def test_checkpoint_with_a_wrong_extension_reaches_diffusers_as_safetensors(tmp_path):
    path = write_safetensors_header(tmp_path / "model.ckpt", SD15_KEYS)
    with _safetensors_named(path) as named:
        assert named.suffix == ".safetensors"
        assert named.read_bytes() == path.read_bytes()
    assert not named.exists()  # the temporary name is cleaned up


def test_single_file_load_failure_is_a_load_error_not_a_crash(tmp_path):
    # Offline, diffusers cannot fetch the SD1.5 config this checkpoint needs; the studio says so in one line.
    # (The tensors are zeros: were the config found, conversion would fail instead; either way, one line.)
    path = write_safetensors_header(tmp_path / "model.ckpt", SD15_KEYS)
    with pytest.raises(ModelLoadError) as info:
        ModelCache().get(str(path))
    assert "\n" not in str(info.value) and "model.ckpt" in str(info.value)


def test_hub_id_offline_is_an_unknown_reference():
    ref = resolve_model_ref("nobody-owner/no-such-model")
    assert ref.kind is ModelKind.HUB
    with pytest.raises(UnknownModelReferenceError, match="reachable hub id"):
        ModelCache().get(ref)


def test_toyworld_resolves_or_says_it_is_missing():
    try:
        ref = resolve_model_ref("toyworld")
    except UnknownModelReferenceError as exc:
        assert "toyworld" in str(exc)
    else:
        assert ref.kind is ModelKind.PROVIDED and Path(ref.location, "model_index.json").is_file()


def test_local_diffusers_folder_loads_and_keeps_its_own_scheduler(tiny_sd15_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    from pipelines.backbone import Backbone

    folder = tmp_path / "pndm-model"
    shutil.copytree(tiny_sd15_dir, folder)
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config["_class_name"] = "PNDMScheduler"  # as real SD1.5 folders ship
    config_path.write_text(json.dumps(config))
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "PNDMScheduler"]
    (folder / "model_index.json").write_text(json.dumps(index))

    ref = resolve_model_ref(str(folder))
    assert (ref.kind, ref.family) == (ModelKind.FOLDER, CheckpointFamily.SD)
    models = ModelCache()
    pipe = models.get(str(folder))
    assert isinstance(pipe, StableDiffusionPipeline)
    assert type(pipe.scheduler).__name__ == "PNDMScheduler"  # the model's own scheduler is never replaced
    assert Backbone.from_pipeline(pipe).ddim_scheduler().config.beta_end == config["beta_end"]
    assert models.get(str(folder)) is pipe and models.loads == 1


def test_sdxl_folder_loads_as_sdxl(tiny_sdxl_dir):
    from diffusers import StableDiffusionXLPipeline

    assert resolve_model_ref(str(tiny_sdxl_dir)).family is CheckpointFamily.SDXL
    assert isinstance(ModelCache().get(str(tiny_sdxl_dir)), StableDiffusionXLPipeline)


def test_cache_evicts_beyond_capacity(tiny_sd15_dir, tiny_sdxl_dir):
    models = ModelCache(capacity=1)
    first = models.get(str(tiny_sd15_dir))
    models.get(str(tiny_sdxl_dir))
    assert len(models) == 1
    assert models.get(str(tiny_sd15_dir)) is not first and models.loads == 3


def test_folder_with_only_pickle_weights_is_refused(tiny_sd15_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_sd15_dir, folder)
    (folder / UNET_WEIGHTS).unlink()
    marker = tmp_path / "pwned"
    write_malicious_pickle(folder / "unet" / "diffusion_pytorch_model.bin", marker)
    with pytest.raises(PickleCheckpointError, match="diffusion_pytorch_model.bin"):
        ModelCache().get(str(folder))
    assert not marker.exists()


def test_folder_with_pickle_renamed_to_safetensors_is_refused(tiny_sd15_dir, tmp_path):
    folder = tmp_path / "disguised"
    shutil.copytree(tiny_sd15_dir, folder)
    marker = tmp_path / "pwned"
    write_malicious_pickle(folder / UNET_WEIGHTS, marker)
    with pytest.raises(PickleCheckpointError):
        ModelCache().get(str(folder))
    assert not marker.exists()


def test_folder_with_both_formats_loads_safetensors_and_never_the_pickle(tiny_sd15_dir, tmp_path):
    folder = tmp_path / "both"
    shutil.copytree(tiny_sd15_dir, folder)
    marker = tmp_path / "pwned"
    write_malicious_pickle(folder / "unet" / "diffusion_pytorch_model.bin", marker)
    ModelCache().get(str(folder))
    assert not marker.exists()


def test_folder_of_an_unsupported_pipeline_is_refused(tiny_sd15_dir, tmp_path):
    folder = tmp_path / "other"
    shutil.copytree(tiny_sd15_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "FluxPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UnsupportedModelError, match="FluxPipeline"):
        resolve_model_ref(str(folder))


def test_plain_folder_is_not_a_model(tmp_path):
    with pytest.raises(UnknownModelReferenceError, match="model_index.json"):
        resolve_model_ref(str(tmp_path))
