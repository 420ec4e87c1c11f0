"""The `regions` task: one image from a global prompt plus regions, each a box or a mask with its own prompt
(RAG: hard binding for the first steps, soft refinement at every step)."""

from __future__ import annotations

from pipelines.settings import GENERATE
from studio.declarations import JobInputs, Schedule, TaskDeclaration, TaskRun
from studio.results import JobResult
from studio.tasks.common import method_errors, sampling, seed_of, size_of
from studio.tasks.region_specs import RegionOptions, check_regions, regions_of, resolved_options


class RegionsOptions(RegionOptions):
    """Regional prompting: `--region "x,y,w,h:prompt"`, `--mask-region "MASK:prompt"` or `--layout FILE`."""


def check(job, options: RegionsOptions) -> None:
    check_regions(options)


def run(task: TaskRun) -> JobResult:
    from pipelines.regional_prompting import regional

    job, backbone = task.job, task.backbone
    options = resolved_options(task.options)
    check_regions(options)
    seed = seed_of(job)
    height, width = size_of(job, backbone)
    regions = regions_of(options)
    with method_errors("regions"):
        output = regional(
            backbone, job.prompt, regions, delta=options.delta, binding=options.binding,
            **sampling(task, seed, height, width),
        )  # fmt: skip
    resolved = job.replace(seed=seed, width=width, height=height, options={job.task: options.model_dump(mode="json")})
    return JobResult(resolved, list(output.images), notes=output.notes)


def total_steps(job, options: RegionsOptions) -> int:
    """The global run's steps plus each region's bound steps (a layout file's regions are not counted yet)."""
    from pipelines.region_boxes import binding_steps

    count = len(options.regions) + len(options.mask_regions)
    return job.steps + count * binding_steps(options.binding, job.steps)


TASK = TaskDeclaration(
    name="regions",
    summary="Regional prompting (RAG): a global prompt plus boxes or masks, each with its own prompt.",
    options=RegionsOptions,
    run=run,
    inputs=JobInputs(argument="prompt", argument_help="Global prompt: the whole image."),
    schedule=Schedule(GENERATE.steps, GENERATE.guidance),
    steps=total_steps,
    check=check,
)
