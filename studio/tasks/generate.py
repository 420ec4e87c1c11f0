"""The `generate` task: an image from a text prompt."""

from __future__ import annotations

from pipelines.settings import GENERATE
from studio.declarations import JobInputs, Options, Schedule, TaskDeclaration, TaskRun
from studio.results import JobResult
from studio.tasks.common import sampling, seed_of, size_of


class GenerateOptions(Options):
    """Plain generation has no options of its own; extra controls still apply."""


def run(task: TaskRun) -> JobResult:
    from pipelines.generate import generate

    job = task.job
    seed = seed_of(job)
    height, width = size_of(job, task.backbone)
    output = generate(task.backbone, job.prompt, **sampling(task, seed, height, width))
    return JobResult(job.replace(seed=seed, width=width, height=height), list(output.images))


TASK = TaskDeclaration(
    name="generate",
    summary="Generate an image from a text prompt.",
    options=GenerateOptions,
    run=run,
    inputs=JobInputs(argument="prompt", argument_help="Text prompt."),
    schedule=Schedule(GENERATE.steps, GENERATE.guidance),
)
