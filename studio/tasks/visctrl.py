"""The `visctrl` task: transfer a reference object's appearance onto the target object(s) of images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from studio.errors import JobSpecError
from studio.tasks.common import method_errors
from studio.tasks.inputs import image_and_mask
from studio.tasks.options import parse_options

if TYPE_CHECKING:
    from pipelines.backbone import Backbone
    from studio.jobs import Job


@dataclass(frozen=True)
class View:
    image: str
    mask: str | None = None


@dataclass(frozen=True)
class VisCtrlOptions:
    reference: str = ""  # the reference image (the appearance to transfer)
    reference_mask: str | None = None
    target_mask: str | None = None  # mask of the job's image
    reference_prompt: str = ""
    passes: int = 1
    start: float = 0.2
    later_steps: int = 5
    later_guidance: float = 4.0
    crop: bool = True
    views: tuple[View, ...] = ()  # more views of the same object, edited together (Feature Gradual Sampling)
    alpha: float = 0.5
    sample_fraction: float = 0.5


def options(job: Job) -> VisCtrlOptions:
    opts = parse_options(VisCtrlOptions, job.options.get("visctrl"), "visctrl")
    if not opts.reference:
        raise JobSpecError("invalid job: visctrl needs options.visctrl.reference (the reference image)")
    if opts.passes < 1 or opts.later_steps < 1:
        raise JobSpecError("invalid job: visctrl passes and later_steps must be >= 1")
    return opts


def total_steps(job: Job) -> int:
    opts = options(job)
    later = opts.passes - 1
    # Per pass: the target views' inversion and the denoising; the reference is inverted once per schedule.
    return 3 * job.steps + later * 2 * opts.later_steps + (opts.later_steps if later else 0)


def run(job: Job, backbone: Backbone, progress, cancel):
    from pipelines.visctrl import VisCtrlPass, visctrl
    from studio.runner import JobResult

    opts = options(job)
    assert job.image is not None  # the Job validator guarantees it
    reference, reference_mask = image_and_mask(
        opts.reference,
        opts.reference_mask,
        backbone=backbone,
        model=job.model,
        caption=opts.reference_prompt,
        name="reference",
    )
    views = [View(job.image, opts.target_mask), *opts.views]
    targets = [
        image_and_mask(v.image, v.mask, backbone=backbone, model=job.model, caption=job.prompt, name=f"view {i}")
        for i, v in enumerate(views)
    ]
    size = job.width or job.height or None
    if job.width and job.height and job.width != job.height:
        raise JobSpecError("invalid job: visctrl edits a square working canvas; give one size (width = height)")
    with method_errors("visctrl"):
        output = visctrl(
            backbone,
            reference,
            reference_mask,
            targets,
            reference_prompt=opts.reference_prompt,
            target_prompt=job.prompt,
            passes=opts.passes,
            first_pass=VisCtrlPass(job.steps, job.guidance, opts.start),
            later_passes=VisCtrlPass(opts.later_steps, opts.later_guidance, opts.start),
            alpha=opts.alpha,
            sample_fraction=opts.sample_fraction,
            crop=opts.crop,
            size=size,
            on_step=progress,
            cancel=cancel,
        )
    return JobResult(job, list(output.images))
