"""The `mutual` task: MasaCtrl mutual self-attention, from a prompt pair or a real source image."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from attention_processors.settings import MASACTRL
from pipelines.settings import MUTUAL
from studio.declarations import JobInputs, MaskPath, Options, Schedule, TaskDeclaration, TaskRun, setting
from studio.job_spec import MAX_PATH, MAX_TEXT
from studio.errors import JobSpecError
from studio.results import JobResult
from studio.tasks.common import REPLAYS_INVERSION, InversionMode, inversion_option, method_errors, sampling, seed_of
from studio.tasks.common import size_of


class MutualOptions(Options):
    source_prompt: str = Field("", max_length=MAX_TEXT, description="Prompt of the source.")
    start: float = setting(MASACTRL, "start")
    levels: int = setting(MASACTRL, "levels")
    source_mask: Annotated[str | None, MaskPath(of="image", label="source mask")] = Field(
        None, max_length=MAX_PATH, description="Source foreground mask."
    )
    target_mask: Annotated[str | None, MaskPath(label="target mask")] = Field(
        None, max_length=MAX_PATH, description="Target foreground mask."
    )
    masked: bool = Field(False, description="Masked variant: foreground and background apart.")
    inversion_guidance: float = setting(MUTUAL, "inversion_guidance")
    inversion: InversionMode = inversion_option()


def check(job, options: MutualOptions) -> None:
    if options.masked and (not job.image or not options.target_mask):
        raise JobSpecError("mutual: the masked variant needs a source image (--image) and a target mask")
    if options.inversion != "ddim" and not job.image:
        raise JobSpecError(f"mutual: --inversion {options.inversion} needs a real source image (--image) to invert")


def needs_ddim(job) -> str | None:
    """A real source is DDIM-inverted and its row replays the trajectory; synthesis takes any sampler."""
    return REPLAYS_INVERSION + " (the real source image; synthesis takes any sampler)" if job.image else None


def run(task: TaskRun) -> JobResult:
    from attention_processors.mutual_self_attention import MaskPair
    from pipelines.mutual import mutual_edit
    from studio.images import open_image
    from studio.masks import load_mask
    from studio.tasks.inputs import image_and_mask

    job, backbone, opts = task.job, task.backbone, task.options
    seed = seed_of(job)
    source = None
    masks = None
    if job.image and opts.masked:
        source, source_mask = image_and_mask(
            job.image, opts.source_mask, backbone=backbone, model=job.model, caption=opts.source_prompt, name="source"
        )
    elif job.image:
        source = open_image(job.image)
    source_size = (source.height, source.width) if source is not None else None
    height, width = size_of(job, backbone, source_size, rows=4)  # source and target, both CFG halves
    if opts.masked:
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
            inversion_guidance_scale=opts.inversion_guidance,
            inversion=opts.inversion,
            **sampling(task, seed, height, width),
        )
    notes = getattr(output, "notes", ())
    return JobResult(job.replace(seed=seed, width=width, height=height), list(output.images), notes=notes)


TASK = TaskDeclaration(
    name="mutual",
    summary="Mutual self-attention (MasaCtrl): the target prompt with the source's appearance.",
    options=MutualOptions,
    run=run,
    inputs=JobInputs(
        argument="prompt",
        argument_help="Target prompt: what the edited image should show.",
        image="optional",
        image_help="Real source image to edit (else synthesise).",
    ),
    schedule=Schedule(MUTUAL.steps, MUTUAL.guidance),
    steps=lambda job, options: job.steps * (2 if job.image else 1),  # a real source is inverted first
    check=check,
    needs_ddim=needs_ddim,
)
