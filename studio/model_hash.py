"""A1111's `Model hash` (AutoV2): the first 10 hex digits of the SHA-256 of the model's weights file.

Why: A1111, civitai and independent metadata parsers identify a checkpoint by this hash, so an image
that carries it can be matched to the model that made it wherever it travels. Hashing a 7 GB SDXL
checkpoint takes tens of seconds, so the full digest is remembered in a small cache file keyed by the
file's path, size and modification time (the same key A1111's own cache uses); a changed file is
hashed again. A diffusers folder has no single checkpoint file; its UNet weights stand in for it, since
the UNet is what distinguishes one fine-tune from another.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from studio.atomic_write import publish_bytes

AUTOV2_DIGITS = 10
CHUNK_BYTES = 1 << 20
UNET_WEIGHTS = ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors")


def default_cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "diffusion-studio" / "model-hashes.json"


def weights_file(location: Path) -> Path | None:
    """The file whose hash names the model: the checkpoint itself, or a folder's UNet weights."""
    if location.is_file():
        return location
    for name in UNET_WEIGHTS:
        if (location / name).is_file():
            return location / name
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def model_hash(location: str | os.PathLike[str], *, cache_file: Path | None = None) -> str | None:
    """The AutoV2 hash of a local model (file or diffusers folder), or None when it has no weights file."""
    path = weights_file(Path(location))
    if path is None:
        return None
    cache_file = cache_file or default_cache_file()
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache = _read_cache(cache_file)
    digest = cache.get(key)
    if not isinstance(digest, str) or len(digest) != 64:
        digest = sha256_file(path)
        cache[key] = digest
        _write_cache(cache_file, cache)
    return digest[:AUTOV2_DIGITS]


def _read_cache(cache_file: Path) -> dict[str, object]:
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no cache yet, or a damaged one: hashing again is always correct
    return data if isinstance(data, dict) else {}


def _write_cache(cache_file: Path, cache: dict[str, object]) -> None:
    try:
        publish_bytes(cache_file, json.dumps(cache, indent=0).encode(), overwrite=True)
    except Exception:  # noqa: BLE001 - a cache that cannot be written only costs a re-hash next time
        return
