"""A1111's AutoV2 model hash: the first 10 hex digits of the weights file's SHA-256, cached by path,
size and mtime, recomputed when the file changes."""

from __future__ import annotations

import hashlib
import os

from studio.model_hash import model_hash


def test_the_hash_is_the_sha256_prefix_of_the_file(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(os.urandom(3_000_000))
    cache = tmp_path / "cache.json"
    assert model_hash(weights, cache_file=cache) == hashlib.sha256(weights.read_bytes()).hexdigest()[:10]
    assert cache.is_file()


def test_a_folder_is_named_by_its_unet_weights(tiny_sd15_dir, tmp_path):
    unet = tiny_sd15_dir / "unet" / "diffusion_pytorch_model.safetensors"
    expected = hashlib.sha256(unet.read_bytes()).hexdigest()[:10]
    assert model_hash(tiny_sd15_dir, cache_file=tmp_path / "c.json") == expected
    assert model_hash(tmp_path, cache_file=tmp_path / "c.json") is None  # no weights: no hash


def test_a_changed_file_is_hashed_again_and_a_damaged_cache_is_ignored(tmp_path):
    weights = tmp_path / "m.safetensors"
    cache = tmp_path / "cache.json"
    weights.write_bytes(b"one")
    first = model_hash(weights, cache_file=cache)
    weights.write_bytes(b"two!")
    assert model_hash(weights, cache_file=cache) == hashlib.sha256(b"two!").hexdigest()[:10] != first
    cache.write_text("{not json")
    assert model_hash(weights, cache_file=cache) == hashlib.sha256(b"two!").hexdigest()[:10]
