"""The `repaint` task: change one region of an earlier image to a new region prompt (RAG's repainting).

The seed and the whole-image prompt come from the image's metadata (the studio's job, or A1111 parameters)
unless given; an image without metadata needs `--seed`. Outside the region the output's pixels are the
input's own bytes.
"""

from __future__ import annotations

from pipelines.settings import GENERATE
from studio.declarations import JobInputs, Schedule, TaskDeclaration, TaskRun
from studio.errors import InputError, MetadataError
from studio.results import JobResult
from studio.tasks.common import check_memory, generator, hooks, method_errors
from studio.tasks.region_specs import RegionOptions, check_regions, regions_of, resolved_options

NEEDS_DDIM = "the outside of the region is held to the image noised to DDIM's levels at every step"


class RepaintOptions(RegionOptions):
    """One region (`--region`, `--mask-region` or a one-region `--layout`) and RAG's two weights."""


def check(job, options: RepaintOptions) -> None:
    check_regions(options, exactly_one=True)


def original_job(job):
    """The job recorded in the input image, or None when it carries no metadata the studio can read."""
    from studio.metadata import read_job

    try:
        return read_job(job.image, job.registry).job
    except MetadataError:
        return None


def run(task: TaskRun) -> JobResult:
    from pipelines.repainting import repaint
    from studio.images import open_image

    job, backbone = task.job, task.backbone
    options = resolved_options(task.options)
    check_regions(options, exactly_one=True)
    image = open_image(job.image)
    original = original_job(job)
    seed = job.seed if job.seed is not None else getattr(original, "seed", None)
    if seed is None:
        raise InputError(
            f"{job.image}: no studio job or A1111 parameters with a seed in this image; give --seed (the seed it"
            " was made with, or any seed) and --prompt for the whole image"
        )
    prompt = job.prompt or (original.prompt if original is not None else "")
    negative = job.negative_prompt or (original.negative_prompt if original is not None else "")
    width, height = image.size
    try:
        backbone.check_size(height, width)
    except ValueError as exc:
        raise InputError(f"repaint: {job.image}: {exc}; repaint works at the image's own size") from None
    check_memory(backbone, height, width)
    (region,) = regions_of(options, image.size)
    with method_errors("repaint"):
        output = repaint(
            backbone, image, region, prompt=prompt, delta=options.delta, binding=options.binding,
            negative_prompt=negative or None, num_inference_steps=job.steps, guidance_scale=job.guidance,
            sampler=job.sampler, generator=generator(seed), **hooks(task),
        )  # fmt: skip
    resolved = job.replace(
        seed=seed, prompt=prompt, negative_prompt=negative, width=width, height=height,
        options={job.task: options.model_dump(mode="json")},
    )  # fmt: skip
    return JobResult(resolved, list(output.images), notes=output.notes)


def total_steps(job, options: RepaintOptions) -> int:
    from pipelines.region_boxes import binding_steps

    return job.steps + binding_steps(options.binding, job.steps)


TASK = TaskDeclaration(
    name="repaint",
    summary="Repaint one region of an earlier image with a new prompt (RAG); the rest keeps its bytes.",
    options=RepaintOptions,
    run=run,
    inputs=JobInputs(
        argument="image",
        argument_help="The image to repaint (its seed and prompt are read from its metadata).",
        image="required",
        prompt_help="Prompt of the whole image (default: the original's, from its metadata).",
    ),
    schedule=Schedule(GENERATE.steps, GENERATE.guidance),
    steps=total_steps,
    needs_ddim=lambda job: NEEDS_DDIM,
    check=check,
)
