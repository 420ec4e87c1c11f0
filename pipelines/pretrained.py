"""Read a local diffusers folder as a text-to-image pipeline: safetensors weights only, quiet.

Why one place: every pipeline the studio runs, and every one the bundled model's own evaluation runs, is
read the same way: `use_safetensors=True` (diffusers and transformers then take the safetensors weights
and never fall back to a pickle) and diffusers' progress bars off (callers report progress themselves).
The pipeline's own scheduler is left as the model ships it: every studio pipeline builds a fresh
scheduler per run from its config (DDIM by default, or the sampler asked for; `pipelines/samplers.py`). Checking an untrusted
folder, downloading from the hub and turning failures into user-facing errors belong to the caller
(studio/loading.py); this module is only the read.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline


def read_pretrained(
    folder: str | os.PathLike[str], pipeline_class: type[DiffusionPipeline] | None = None, **kwargs: Any
) -> DiffusionPipeline:
    """`pipeline_class.from_pretrained(folder)` with safetensors weights only (default class: diffusers' choice)."""
    from diffusers import DiffusionPipeline

    cls = pipeline_class or DiffusionPipeline
    return cls.from_pretrained(str(folder), use_safetensors=True, **kwargs)


def quiet_progress(pipe: DiffusionPipeline) -> DiffusionPipeline:
    """Silence diffusers' progress bars (the studio reports progress itself); the scheduler is left alone."""
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pretrained(
    folder: str | os.PathLike[str], pipeline_class: type[DiffusionPipeline] | None = None, **kwargs: Any
) -> DiffusionPipeline:
    """A local folder read by `read_pretrained`, its progress bars off."""
    return quiet_progress(read_pretrained(folder, pipeline_class, **kwargs))
