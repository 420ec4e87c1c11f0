"""Read a local diffusers folder as a text-to-image pipeline: safetensors weights only, DDIM, quiet.

Why one place: every pipeline the studio runs, and every one the bundled model's own evaluation runs, is
read the same way: `use_safetensors=True` (diffusers and transformers then take the safetensors weights
and never fall back to a pickle), the DDIM scheduler that every method assumes (inversion runs it
backwards), and diffusers' progress bars off (callers report progress themselves). Checking an untrusted
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


def use_ddim(pipe: DiffusionPipeline) -> DiffusionPipeline:
    """Swap in a DDIM scheduler built from the pipeline's own scheduler config and silence progress bars."""
    from diffusers import DDIMScheduler

    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pretrained(
    folder: str | os.PathLike[str], pipeline_class: type[DiffusionPipeline] | None = None, **kwargs: Any
) -> DiffusionPipeline:
    """A local folder read by `read_pretrained` and set to DDIM by `use_ddim`."""
    return use_ddim(read_pretrained(folder, pipeline_class, **kwargs))
