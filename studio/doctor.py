"""What this machine can run: versions, CUDA, and the attention backends `auto` would pick.

Why: "it is slow" and "it crashes" reports start with the environment. `studio doctor` gathers it in
one place (like `diffusers-cli env`), as data, so the CLI can print it as a table or JSON and a bug
report can paste it. Every probe is guarded: a missing optional package is a finding, not a crash.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import sys
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cuda() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    if info["available"]:
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        info.update(
            device=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            bf16=torch.cuda.is_bf16_supported(),
        )
    return info


def _flex() -> str | None:
    """None if FlexAttention imports, else why not."""
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


def _attention() -> dict[str, Any]:
    import torch

    try:
        from kernels import available_backends, select_backend
    except ImportError as exc:
        return {"error": f"kernels package unavailable: {exc}"}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    return {
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "backends": available_backends(device),
        "auto": {form: select_backend(form, device, dtype) for form in ("none", "per_key", "full")},
    }


def collect_report() -> dict[str, Any]:
    """The doctor's findings as plain JSON-ready data."""
    packages = (
        "diffusion-studio",
        "torch",
        "diffusers",
        "transformers",
        "accelerate",
        "peft",
        "safetensors",
        "pillow",
        "opencv-python",
        "gradio",
        "xformers",
        "triton",
        "insightface",  # FaceID's face analysis (the `faces` extra)
        "onnxruntime",
    )
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in packages},
        "cuda": _cuda(),
        "flex_attention": _flex() or "ok",
        "xformers_importable": importlib.util.find_spec("xformers") is not None,
        "triton_importable": importlib.util.find_spec("triton") is not None,
        "attention": _attention(),
    }
