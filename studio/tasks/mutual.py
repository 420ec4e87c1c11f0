"""The `mutual` task: MasaCtrl mutual self-attention, from a prompt pair or a real source image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from attention_processors.mutual_self_attention import MaskPair
from studio.errors import JobSpecError
from studio.images import open_image
from studio.masks import load_mask
from studio.tasks.common import generator, method_errors, seed_of, size_of
from studio.tasks.inputs import image_and_mask
from studio.tasks.options import parse_options

if TYPE_CHECKING:
    from pipelines.backbone import Backbone
    from studio.jobs import Job


@dataclass(frozen=True)
class MutualOptions:
    source_prompt: str = ""
    start: float = 4 / 50  # first controlled step, as a fraction of the schedule
    levels: int = 2  # decoder self-attention at this many highest resolutions
    source_mask: str | None = None  # masked variant: both masks (or, on toyworld, automatic ones)
    target_mask: str | None = None
    masked: bool = False  # use the masked variant (masks from the files above, else automatic)
    inversion_guidance: float = 1.0


def options(job: Job) -> MutualOptions:
    return parse_options(MutualOptions, job.options.get("mutual"), "mutual")


def total_steps(job: Job) -> int:
    return job.steps * (2 if job.image else 1)


def run(job: Job, backbone: Backbone, progress, cancel):
    from pipelines.mutual import mutual_edit
    from studio.runner import JobResult

    opts = options(job)
    seed = seed_of(job)
    source = None
    masks = None
    if job.image and opts.masked:
        source, source_mask = image_and_mask(
            job.image, opts.source_mask, backbone=backbone, model=job.model, caption=opts.source_prompt, name="source"
        )
    elif job.image:
        source = open_image(job.image)
    height, width = size_of(job, backbone, (source.height, source.width) if source is not None else None)
    if opts.masked:
        if source is None or not opts.target_mask:
            raise JobSpecError("mutual: the masked variant needs a source image (--image) and a target mask")
        with method_errors("mutual"):
            masks = MaskPair(source_mask, load_mask(opts.target_mask, name="target mask"))
    with method_errors("mutual"):
        output = mutual_edit(
            backbone,
            job.prompt,
            source_prompt=opts.source_prompt,
            source_image=source,
            masks=masks,
            start=opts.start,
            levels=opts.levels,
            negative_prompt=job.negative_prompt or None,
            num_inference_steps=job.steps,
            guidance_scale=job.guidance,
            inversion_guidance_scale=opts.inversion_guidance,
            width=width,
            height=height,
            generator=generator(seed),
            on_step=progress,
            cancel=cancel,
        )
    return JobResult(job.replace(seed=seed, width=width, height=height), list(output.images))
