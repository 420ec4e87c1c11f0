"""The `invert` task: DDIM-invert an image, reconstruct it from the noise, and measure the round trip.

`--uniform` inverts and reconstructs with uniform cross-attention maps (UAM, arXiv 2411.19652).
"""

from __future__ import annotations

from pydantic import Field

from pipelines.settings import RECONSTRUCT
from studio.declarations import JobInputs, Options, Schedule, TaskDeclaration, TaskRun
from studio.results import JobResult
from studio.tasks.common import REPLAYS_INVERSION, hooks, size_of


class InvertOptions(Options):
    uniform: bool = Field(
        False, description="Uniform attention maps (UAM): every cross-attention output is the mean of the text values."
    )


def run(task: TaskRun) -> JobResult:
    from studio.images import open_image
    from studio.reconstruction import invert_and_reconstruct

    job, backbone = task.job, task.backbone
    assert job.image is not None  # the registry guarantees it for this task
    source = open_image(job.image)
    height, width = size_of(job, backbone, (source.height, source.width))
    reconstruction, metrics = invert_and_reconstruct(
        backbone,
        source,
        job,
        height=height,
        width=width,
        uniform=task.options.uniform,
        **hooks(task),
    )
    return JobResult(job.replace(width=width, height=height), [reconstruction], metrics)


TASK = TaskDeclaration(
    name="invert",
    summary="DDIM-invert an image, reconstruct it from the noise, and report the reconstruction error.",
    options=InvertOptions,
    run=run,
    inputs=JobInputs(
        argument="image",
        argument_help="PNG, JPEG or WebP image to invert.",
        image="required",
        prompt_help="Prompt to invert with (usually empty).",
        negative_and_seed=False,
    ),
    schedule=Schedule(RECONSTRUCT.steps, RECONSTRUCT.guidance, guidance_help="CFG scale for inversion."),
    needs_ddim=lambda job: REPLAYS_INVERSION,
    steps=lambda job, options: 2 * job.steps,  # the schedule runs twice: inversion, then reconstruction
)
