"""No pickle reaches a loader: a model folder that names one anywhere is refused before diffusers sees it.

Every case runs with `pickle.load`, `pickle.loads` and `torch.load` patched to fail the test if called,
and a malicious pickle that would create a marker file, so a refusal that came too late would show
twice. The hostile folders are built from a real tiny SD1.5 folder; the shard layouts are the ones
diffusers and transformers write themselves (`save_pretrained(max_shard_size=...)`).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from studio.errors import ModelReferenceError
from studio.model_cache import ModelCache
from studio.model_refs import resolve_model_ref
from tests.studio_inputs import write_malicious_pickle

UNET = "unet"
UNET_INDEX = "diffusion_pytorch_model.safetensors.index.json"


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("a pickle reached a loader")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)


@pytest.fixture(scope="module")
def sharded_sd15_dir(tiny_sd15_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SD1.5 folder with its UNet and text encoder saved as real safetensors shards."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = tmp_path_factory.mktemp("sharded") / "tiny-sd15-sharded"
    shutil.copytree(tiny_sd15_dir, folder)
    for name, cls in ((UNET, UNet2DConditionModel), ("text_encoder", CLIPTextModel)):
        model = cls.from_pretrained(tiny_sd15_dir / name)
        shutil.rmtree(folder / name)
        model.save_pretrained(folder / name, safe_serialization=True, max_shard_size="20KB")
    assert (folder / UNET / UNET_INDEX).is_file() and (folder / "text_encoder" / "model.safetensors.index.json").is_file()
    return folder


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(folder, target, symlinks=True)
    return target


def _rewrite_index(index_path: Path, rename: Callable[[str], str]) -> None:
    index = json.loads(index_path.read_text())
    index["weight_map"] = {k: rename(v) for k, v in index["weight_map"].items()}
    index_path.write_text(json.dumps(index))


def _first_shard(index_path: Path) -> str:
    return sorted(set(json.loads(index_path.read_text())["weight_map"].values()))[0]


# Each case turns a copy of the sharded folder into a hostile one; `marker` is what a pickle would create.
def _index_names_a_bin_shard(folder: Path, marker: Path) -> None:
    """The reported hole: the safetensors index names `x.bin`, a decoy .safetensors sits beside it."""
    index = folder / UNET / UNET_INDEX
    shard = _first_shard(index)
    write_malicious_pickle(folder / UNET / shard.replace(".safetensors", ".bin"), marker)
    _rewrite_index(index, lambda s: s.replace(".safetensors", ".bin") if s == shard else s)
    (folder / UNET / "diffusion_pytorch_model.safetensors").write_bytes((folder / UNET / shard).read_bytes())


def _bin_index_beside_decoy(folder: Path, marker: Path) -> None:
    """Only a `.bin.index.json` and its pickle shards, plus a decoy safetensors of another name."""
    unet = folder / UNET
    index = unet / UNET_INDEX
    data = json.loads(index.read_text())
    for shard in set(data["weight_map"].values()):
        write_malicious_pickle(unet / shard.replace(".safetensors", ".bin"), marker)
        os.replace(unet / shard, unet / f"decoy-{shard}")
    _rewrite_index(index, lambda s: s.replace(".safetensors", ".bin"))
    os.replace(index, unet / "diffusion_pytorch_model.bin.index.json")


def _text_encoder_index_names_a_bin_shard(folder: Path, marker: Path) -> None:
    index = folder / "text_encoder" / "model.safetensors.index.json"
    shard = _first_shard(index)
    write_malicious_pickle(folder / "text_encoder" / "pytorch_model-evil.bin", marker)
    _rewrite_index(index, lambda s: "pytorch_model-evil.bin" if s == shard else s)


def _shard_in_a_subfolder(folder: Path, marker: Path) -> None:
    index = folder / UNET / UNET_INDEX
    shard = _first_shard(index)
    (folder / UNET / "sub").mkdir()
    write_malicious_pickle(folder / UNET / "sub" / "shard.bin", marker)
    _rewrite_index(index, lambda s: "sub/shard.bin" if s == shard else s)


def _shard_outside_the_folder(folder: Path, marker: Path) -> None:
    index = folder / UNET / UNET_INDEX
    shard = _first_shard(index)
    write_malicious_pickle(folder.parent / "evil.safetensors", marker)
    _rewrite_index(index, lambda s: "../../evil.safetensors" if s == shard else s)


def _shard_is_a_pickle_named_safetensors(folder: Path, marker: Path) -> None:
    shard = _first_shard(folder / UNET / UNET_INDEX)
    write_malicious_pickle(folder / UNET / shard, marker)


def _shard_symlinks_to_a_pickle(folder: Path, marker: Path) -> None:
    shard = folder / UNET / _first_shard(folder / UNET / UNET_INDEX)
    target = write_malicious_pickle(folder.parent / "elsewhere.bin", marker)
    shard.unlink()
    shard.symlink_to(target)


def _component_symlinks_to_a_pickle_folder(folder: Path, marker: Path) -> None:
    outside = folder.parent / "pickled-unet"
    outside.mkdir()
    shutil.copy(folder / UNET / "config.json", outside / "config.json")
    write_malicious_pickle(outside / "diffusion_pytorch_model.bin", marker)
    shutil.rmtree(folder / UNET)
    (folder / UNET).symlink_to(outside, target_is_directory=True)


def _weights_symlink_to_a_pickle(folder: Path, marker: Path) -> None:
    for shard in set(json.loads((folder / UNET / UNET_INDEX).read_text())["weight_map"].values()):
        (folder / UNET / shard).unlink()
    (folder / UNET / UNET_INDEX).unlink()
    (folder / UNET / "diffusion_pytorch_model.safetensors").symlink_to(
        write_malicious_pickle(folder.parent / "weights.pkl", marker)
    )


def _component_from_custom_code(folder: Path, marker: Path) -> None:
    index = json.loads((folder / "model_index.json").read_text())
    index["unet"] = ["evil_module", "EvilUNet"]
    (folder / "model_index.json").write_text(json.dumps(index))


HOSTILE_FOLDERS = [
    _index_names_a_bin_shard,
    _bin_index_beside_decoy,
    _text_encoder_index_names_a_bin_shard,
    _shard_in_a_subfolder,
    _shard_outside_the_folder,
    _shard_is_a_pickle_named_safetensors,
    _shard_symlinks_to_a_pickle,
    _component_symlinks_to_a_pickle_folder,
    _weights_symlink_to_a_pickle,
    _component_from_custom_code,
]


@pytest.mark.parametrize("make_hostile", HOSTILE_FOLDERS, ids=lambda f: f.__name__.strip("_"))
def test_a_folder_that_names_a_pickle_anywhere_is_refused_before_any_loader(
    make_hostile, sharded_sd15_dir, tmp_path, no_unpickling
):
    folder = _copy(sharded_sd15_dir, tmp_path)
    marker = tmp_path / "pwned"
    make_hostile(folder, marker)
    with pytest.raises(ModelReferenceError) as info:
        ModelCache().get(str(folder))
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_the_reported_hole_is_refused_with_the_shard_named(sharded_sd15_dir, tmp_path, no_unpickling):
    folder = _copy(sharded_sd15_dir, tmp_path)
    _index_names_a_bin_shard(folder, tmp_path / "pwned")
    with pytest.raises(ModelReferenceError, match=r"names the shard '.*\.bin', which is not a \.safetensors file"):
        resolve_model_ref(str(folder))


def test_a_sharded_safetensors_folder_loads_without_unpickling(sharded_sd15_dir, tiny_sd15_dir, no_unpickling):
    sharded = ModelCache().get(str(sharded_sd15_dir))
    whole = ModelCache().get(str(tiny_sd15_dir))
    for name in ("unet", "text_encoder"):
        mine, theirs = getattr(sharded, name).state_dict(), getattr(whole, name).state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_a_pickle_beside_complete_safetensors_weights_is_never_read(sharded_sd15_dir, tmp_path, no_unpickling):
    folder = _copy(sharded_sd15_dir, tmp_path)
    marker = tmp_path / "pwned"
    write_malicious_pickle(folder / UNET / "diffusion_pytorch_model.bin", marker)
    write_malicious_pickle(folder / "text_encoder" / "pytorch_model.bin", marker)
    ModelCache().get(str(folder))
    assert not marker.exists()


@pytest.mark.parametrize("header_len", [384, 640, 896, 1152, 1408])
def test_a_safetensors_header_whose_length_starts_like_a_pickle_is_safetensors(tmp_path, header_len):
    """These lengths begin `\\x80\\x01`..`\\x80\\x05`, a pickle's opening; real shards have them."""
    from studio.checkpoints import FileKind, sniff_weights_file

    header = json.dumps({"__metadata__": {"format": "pt"}}).encode().ljust(header_len)
    path = tmp_path / "shard.safetensors"
    path.write_bytes(header_len.to_bytes(8, "little") + header)
    assert path.read_bytes()[0] == 0x80
    assert sniff_weights_file(path) is FileKind.SAFETENSORS
