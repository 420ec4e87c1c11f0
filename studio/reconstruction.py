"""Invert an image with DDIM, regenerate it from x_T, and measure how far the round trip drifted.

Why: the `invert` task is how a user checks that a model (and a prompt) can faithfully represent an
image before editing it; the reconstruction error is the figure that says so. The error is measured in
pixel space against the exact image that was inverted (the input resized to the job's size), so it
includes the VAE's own loss as well as the inversion's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from attention_processors import Control
    from pipelines.backbone import Backbone
    from pipelines.events import CancelToken, StepCallback
    from studio.jobs import Job


def pixel_error(reference: Image.Image, candidate: Image.Image) -> dict[str, float]:
    """Mean squared error and PSNR (dB) between two same-size RGB images, on a [0, 1] scale."""
    if reference.size != candidate.size:
        raise ValueError(f"sizes differ: {reference.size} vs {candidate.size}")
    a = np.asarray(reference.convert("RGB"), dtype=np.float64) / 255.0  # (H, W, 3)
    b = np.asarray(candidate.convert("RGB"), dtype=np.float64) / 255.0  # (H, W, 3)
    mse = float(np.mean((a - b) ** 2))
    psnr = math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)
    return {"mse": mse, "psnr_db": psnr}


def invert_and_reconstruct(
    backbone: Backbone,
    source: Image.Image,
    job: Job,
    *,
    height: int,
    width: int,
    uniform: bool = False,
    controls: Sequence[Control] = (),
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[Image.Image, dict[str, float]]:
    """DDIM-invert `source` with the job's prompt and steps, reconstruct it free-running, and compare.

    `controls` act on the reconstruction (the inversion stays plain, so it measures the model itself).
    `uniform` inverts and reconstructs with uniform cross-attention maps (UAM): both legs, as the method does.
    """
    from pipelines.inversion import invert
    from pipelines.reconstruction import reconstruct

    resized = source if source.size == (width, height) else source.resize((width, height), Image.Resampling.LANCZOS)
    negative = job.negative_prompt or None
    inversion = invert(
        backbone,
        resized,
        job.prompt,
        num_inference_steps=job.steps,
        guidance_scale=job.guidance,
        negative_prompt=negative,
        sampler=job.sampler,
        uniform=uniform,
        on_step=on_step,
        cancel=cancel,
    )
    output = reconstruct(
        backbone,
        inversion,
        job.prompt,
        negative_prompt=negative,
        guidance_scale=job.guidance,
        sampler=job.sampler,
        uniform=uniform,
        controls=controls,
        on_step=on_step,
        cancel=cancel,
    )
    reconstruction = output.images[0]
    return reconstruction, pixel_error(resized, reconstruction)
