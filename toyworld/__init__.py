"""Toyworld: the studio's bundled text-to-image model of a procedural world, its detector and metrics.

Why it exists: no real weights can be downloaded where the studio is built and tested, and random
weights cannot show that a method works. Toyworld scenes are procedural, so what a method claims
(colour, shape, pattern, position, transfer of a reference object) can be measured exactly.

The package sits beside `studio`: it uses `pipelines` and below, and the studio reaches it only through
the entry points it declares (toyworld/providers.py). Its trainers live in `toyworld.train`.
Importing this package does no work; submodules load torch and diffusers only when used.
"""

from __future__ import annotations

import os
from pathlib import Path

MODEL_ENV = "DIFFUSION_STUDIO_TOYWORLD"  # a folder that replaces the bundled model wherever it is looked up
IP_ADAPTER_FILE = "ip_adapter/ip-adapter-plus_toyworld.safetensors"  # inside the model folder
_PACKAGED = Path(__file__).resolve().parent / "model"  # where a wheel carries assets/toyworld (see setup.py)
_CHECKOUT = Path(__file__).resolve().parents[1] / "assets" / "toyworld"  # a source checkout, an editable install


def toyworld_path() -> Path:
    """The bundled model folder (diffusers layout): `$DIFFUSION_STUDIO_TOYWORLD`, else the installed copy,
    else `assets/toyworld` of the source checkout. The folder may be missing; callers say so."""
    override = os.environ.get(MODEL_ENV)
    if override:
        return Path(override).expanduser()
    return _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT


def toyworld_ip_adapter() -> Path:
    """The bundled IP-Adapter (Plus form, official safetensors layout) trained on the bundled model and its
    `image_encoder/` (see toyworld/train/ip_adapter.py)."""
    return toyworld_path() / IP_ADAPTER_FILE


def load_toyworld_pipeline(path: str | os.PathLike[str] | None = None, **kwargs):
    """The bundled model (or a toyworld folder at `path`) as a DDIM `StableDiffusionPipeline`, offline.

    The same read the studio's loader makes (pipelines/pretrained.py); user-supplied folders should go
    through the studio (`ModelCache().get(path)`), which checks a folder before anything reads it.
    """
    from diffusers import StableDiffusionPipeline

    from pipelines.pretrained import load_pretrained

    kwargs.setdefault("local_files_only", True)
    return load_pretrained(path or toyworld_path(), StableDiffusionPipeline, **kwargs)


__all__ = ["IP_ADAPTER_FILE", "MODEL_ENV", "load_toyworld_pipeline", "toyworld_ip_adapter", "toyworld_path"]
