"""The `freecustom` task: compose reference concepts into a new image with multi-reference self-attention."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from attention_processors.settings import FREECUSTOM
from pipelines.settings import FREECUSTOM_RUN
from studio.declarations import Flag, ImagePath, JobInputs, MaskPath, Options, Schedule, TaskDeclaration
from studio.declarations import TaskRun, Zipped, setting
from studio.job_spec import MAX_PATH, MAX_TEXT
from studio.results import JobResult
from studio.tasks.common import method_errors, sampling, seed_of, size_of

MAX_REFERENCES = 8  # each reference adds a UNet row and its keys to every MRSA site; memory is checked too


class ReferenceSpec(Options):
    """One concept: its image, a caption, and its mask (or a concept word that makes one)."""

    image: Annotated[str, ImagePath(), Flag("--ref")] = Field(
        max_length=MAX_PATH, description="Reference image (repeatable, one per concept)."
    )
    caption: Annotated[str, Flag("--caption")] = Field(
        "", max_length=MAX_TEXT, description="Caption per --ref (repeatable)."
    )
    mask: Annotated[str | None, MaskPath(of="image", label="reference mask"), Flag("--mask")] = Field(
        None, max_length=MAX_PATH, description="Concept mask per --ref (repeatable)."
    )
    concept: Annotated[str | None, Flag("--concept")] = Field(
        None, max_length=MAX_TEXT, description="Concept word per --ref, for automatic masks."
    )


class FreeCustomOptions(Options):
    references: Annotated[tuple[ReferenceSpec, ...], Zipped(primary="image", item="reference")] = Field(
        min_length=1, max_length=MAX_REFERENCES, description="The concepts to compose."
    )
    mask_weight: Annotated[float, Flag("--weight")] = setting(FREECUSTOM, "mask_weight")
    style_fidelity: float = setting(FREECUSTOM, "style_fidelity")
    reference_seed: int = setting(FREECUSTOM_RUN, "reference_seed")


def run(task: TaskRun) -> JobResult:
    from pipelines.customize import Reference, freecustom
    from studio.devices import available_memory_bytes
    from studio.tasks.inputs import image_and_mask

    job, backbone, opts = task.job, task.backbone, task.options
    seed = seed_of(job)
    height, width = size_of(job, backbone)
    references = []
    for i, spec in enumerate(opts.references):
        image, mask = image_and_mask(
            spec.image,
            spec.mask,
            backbone=backbone,
            model=job.model,
            caption=spec.caption,
            concept=spec.concept,
            name=f"reference {i}",
        )
        references.append(Reference(image, mask, spec.caption))
    with method_errors("freecustom"):
        output = freecustom(
            backbone,
            job.prompt,
            references,
            mask_weights=opts.mask_weight,
            style_fidelity=opts.style_fidelity,
            reference_seed=opts.reference_seed,
            max_memory_bytes=available_memory_bytes(backbone.device),
            **sampling(task, seed, height, width),
        )
    notes = getattr(output, "notes", ())
    return JobResult(job.replace(seed=seed, width=width, height=height), list(output.images), notes=notes)


TASK = TaskDeclaration(
    name="freecustom",
    summary="FreeCustom: compose reference concepts with multi-reference self-attention.",
    options=FreeCustomOptions,
    run=run,
    inputs=JobInputs(argument="prompt", argument_help="Prompt composing the concepts."),
    schedule=Schedule(FREECUSTOM_RUN.steps, FREECUSTOM_RUN.guidance),
    needs_ddim=lambda job: "its references are re-noised to DDIM's levels and teacher-forced every step",
)
