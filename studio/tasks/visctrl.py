"""The `visctrl` task: transfer a reference object's appearance onto the target object(s) of images."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from attention_processors.settings import VISCTRL
from pipelines.settings import FIRST_PASS, LATER_PASS, VISCTRL_RUN
from studio.declarations import (
    Flag,
    ImagePath,
    JobInputs,
    MaskPath,
    Options,
    Schedule,
    TaskDeclaration,
    TaskRun,
    Zipped,
    setting,
)
from studio.errors import JobSpecError
from studio.job_spec import MAX_PATH, MAX_TEXT
from studio.results import JobResult
from studio.tasks.common import REPLAYS_INVERSION, InversionMode, hooks, inversion_option, method_errors

MAX_VIEWS = 16  # views edited together in one batch; each adds a CFG pair of UNet rows


class View(Options):
    """Another view of the target object, edited with it (Feature Gradual Sampling)."""

    image: Annotated[str, ImagePath(), Flag("--view")] = Field(
        max_length=MAX_PATH, description="Another view of the target (repeatable)."
    )
    mask: Annotated[str | None, MaskPath(of="image", label="view mask"), Flag("--view-mask")] = Field(
        None, max_length=MAX_PATH, description="Mask per --view (repeatable)."
    )


class VisCtrlOptions(Options):
    reference: Annotated[str, ImagePath(), Flag(short="-r")] = Field(
        max_length=MAX_PATH, description="Reference image: the appearance to transfer."
    )
    reference_mask: Annotated[str | None, MaskPath(of="reference", label="reference mask")] = Field(
        None, max_length=MAX_PATH, description="Mask of the reference object."
    )
    target_mask: Annotated[str | None, MaskPath(of="image", label="target mask")] = Field(
        None, max_length=MAX_PATH, description="Mask of the target object."
    )
    reference_prompt: str = Field("", max_length=MAX_TEXT, description="Reference prompt.")
    passes: int = setting(VISCTRL_RUN, "passes")
    start: float = setting(VISCTRL, "start")
    later_steps: int = Field(LATER_PASS.num_inference_steps, ge=1, le=1000, description="DDIM steps of later passes.")
    later_guidance: float = Field(LATER_PASS.guidance_scale, ge=0, le=100, description="CFG of later passes.")
    crop: Annotated[bool, Flag("--no-crop", negate=True, help="Edit the whole (square) image, not a crop.")] = (
        setting(VISCTRL_RUN, "crop")
    )
    views: Annotated[tuple[View, ...], Zipped(primary="image", item="view")] = Field(
        (), max_length=MAX_VIEWS, description="More views of the same object, edited together."
    )
    alpha: float = setting(VISCTRL, "alpha")
    sample_fraction: float = setting(VISCTRL, "sample_fraction")
    inversion: InversionMode = inversion_option()


def total_steps(job, opts: VisCtrlOptions) -> int:
    later = opts.passes - 1
    # Per pass: the target views' inversion and the denoising; the reference is inverted once per schedule.
    return 3 * job.steps + later * 2 * opts.later_steps + (opts.later_steps if later else 0)


def check(job, options: VisCtrlOptions) -> None:
    if job.width and job.height and job.width != job.height:
        raise JobSpecError("invalid job: visctrl edits a square working canvas; give one size (width = height)")


def run(task: TaskRun) -> JobResult:
    from pipelines.visctrl import VisCtrlPass, visctrl
    from studio.tasks.inputs import image_and_mask

    job, backbone, opts = task.job, task.backbone, task.options
    assert job.image is not None  # the registry guarantees it
    reference, reference_mask = image_and_mask(
        opts.reference,
        opts.reference_mask,
        backbone=backbone,
        model=job.model,
        caption=opts.reference_prompt,
        name="reference",
    )
    views = [View(image=job.image, mask=opts.target_mask), *opts.views]
    targets = [
        image_and_mask(v.image, v.mask, backbone=backbone, model=job.model, caption=job.prompt, name=f"view {i}")
        for i, v in enumerate(views)
    ]
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
            size=job.width or job.height or None,
            sampler=job.sampler,
            inversion=opts.inversion,
            **hooks(task),
        )
    return JobResult(job, list(output.images))


TASK = TaskDeclaration(
    name="visctrl",
    summary="VisCtrl: transfer a reference object's appearance onto the target object, pasted back in place.",
    options=VisCtrlOptions,
    run=run,
    inputs=JobInputs(
        argument="image",
        argument_help="Target image: the object to re-texture.",
        image="required",
        prompt_help="Target prompt.",
        negative_and_seed=False,
        size="square",
    ),
    schedule=Schedule(
        FIRST_PASS.num_inference_steps,
        FIRST_PASS.guidance_scale,
        steps_help="DDIM steps of the first pass.",
        guidance_help="CFG of the first pass.",
    ),
    steps=total_steps,
    needs_ddim=lambda job: REPLAYS_INVERSION,
    check=check,
)
