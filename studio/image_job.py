"""What reading an image's metadata gives back, and the chunk names the studio writes.

Its own module because the studio's reader (`studio.metadata`) and other tools' (`studio.foreign_metadata`)
both return it, and the first hands images without a studio job to the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.jobs import Job

PARAMETERS_KEY = "parameters"
JOB_KEY = "studio_job"
VERSION = "diffusion-studio"  # A1111's `Version:` item, which tells our own texts apart


@dataclass(frozen=True)
class ImageJob:
    """A job read back from an image, where it came from, and what could not be carried over.

    `missing_model` names a model the metadata gave (by name or hash) that no model folder holds: the job
    keeps the name, and running it needs `--model` (`studio.model_dirs.missing_model_error` says so).
    """

    job: Job
    source: str  # "studio" | "a1111" | "comfyui"
    notes: tuple[str, ...] = ()
    missing_model: Any = None  # studio.model_dirs.NamedModel
