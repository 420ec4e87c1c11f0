"""Writing tuned weights: a safetensors file with the recipe recorded in its header.

Why the header: a tuned file must say how it was made (recipe, token, class word, steps, base model) so
`studio` can name it in outputs and a reader needs no side file. Metadata values are strings (safetensors).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import safetensors
import safetensors.torch
from torch import Tensor

RECIPE_KEY = "studio_tuning"  # header key holding the recipe JSON


def write_weights(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> Path:
    """Write `tensors` (contiguous CPU copies) to `path` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    handle, temp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(handle)
    try:
        safetensors.torch.save_file(plain, temp, metadata={"format": "pt", **metadata})
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


def read_header(path: Path) -> dict[str, str]:
    """The file's safetensors metadata (no tensor is read)."""
    with safetensors.safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def recipe_of(path: Path) -> dict | None:
    """The recipe JSON the studio wrote into a tuned file, or None for a file from elsewhere."""
    text = read_header(path).get(RECIPE_KEY)
    if text is None:
        return None
    try:
        found = json.loads(text)
    except json.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None
