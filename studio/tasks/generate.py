"""The `generate` task: images from a text prompt, `batch_size` per UNet call, `batch_count` calls.

Seeds follow A1111: image i of call b has seed `seed + b * batch_size + i`, drawn from its own generator,
so it starts from the noise of a single run with that seed. Each image gets its own job (that seed, batch
size and count 1), which re-makes it alone. A batched UNet call rounds its matrix products differently
from a single one, so on CPU such a re-run may differ from the batched image by one grey level in a few
pixels; a batch size of 1 (any batch count) re-makes the same bytes.
"""

from __future__ import annotations

from pipelines.settings import GENERATE
from studio.declarations import JobInputs, Options, Schedule, TaskDeclaration, TaskRun
from studio.results import JobResult
from studio.tasks.common import generator, sampling, seed_of, size_of


class GenerateOptions(Options):
    """Plain generation has no options of its own; extra controls still apply."""


def run(task: TaskRun) -> JobResult:
    from pipelines.seeds import batch_seeds, seeded_generators
    from pipelines.text_to_image import generate

    job = task.job
    seed = seed_of(job)
    height, width = size_of(job, task.backbone, rows=2 * job.batch_size)
    resolved = job.replace(seed=seed, width=width, height=height)
    images, jobs, notes = [], [], ()
    for seeds in batch_seeds(seed, job.batch_size, job.batch_count):
        kwargs = sampling(task, seeds[0], height, width)
        if len(seeds) > 1:
            kwargs["generator"] = seeded_generators(seeds)
        else:
            kwargs["generator"] = generator(seeds[0])
        output = generate(task.backbone, [job.prompt] * len(seeds), **kwargs)
        images += list(output.images)
        jobs += [resolved.replace(seed=s, batch_size=1, batch_count=1) for s in seeds]
        notes = output.notes
    if len(images) == 1:
        return JobResult(resolved, images, notes=notes)
    return JobResult(resolved, images, notes=notes, image_jobs=jobs)


TASK = TaskDeclaration(
    name="generate",
    summary="Generate images from a text prompt.",
    options=GenerateOptions,
    run=run,
    inputs=JobInputs(argument="prompt", argument_help="Text prompt."),
    schedule=Schedule(GENERATE.steps, GENERATE.guidance),
    steps=lambda job, options: job.steps * job.batch_count,
    batches=True,
)
