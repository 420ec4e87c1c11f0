"""The `edit` task: edit a real image towards a target prompt with Uniform Attention Maps (UAM) over MasaCtrl.

`--inversion uniform` (the default) is the official UAM edit (arXiv 2411.19652): mutual self-attention edit
branch, the uniform-attention reconstruction branch and the adaptive x̂0 mask mixing; `--inversion ddim` is
the same edit without them, the paper's MasaCtrl baseline.
"""

from __future__ import annotations

from pydantic import Field

from attention_processors.settings import MASACTRL
from pipelines.settings import UNIFORM_EDIT
from studio.declarations import JobInputs, Options, Schedule, TaskDeclaration, TaskRun, setting
from studio.errors import JobSpecError
from studio.job_spec import MAX_TEXT
from studio.results import JobResult
from studio.tasks.common import REPLAYS_INVERSION, InversionMode, hooks, inversion_option, method_errors, size_of


class EditOptions(Options):
    source_prompt: str = Field("", max_length=MAX_TEXT, description="Prompt of the input image (official: empty).")
    inversion: InversionMode = inversion_option("uniform")
    start: float = setting(MASACTRL, "start")
    levels: int = setting(MASACTRL, "levels")
    quantile: float = setting(UNIFORM_EDIT, "quantile")
    cutoff: int = setting(UNIFORM_EDIT, "cutoff")
    dilate: int = setting(UNIFORM_EDIT, "dilate")


def check(job, options: EditOptions) -> None:
    if not job.prompt.strip():
        raise JobSpecError("edit: give the target prompt with --prompt (what the edited image should show)")
    if job.prompt.strip() == options.source_prompt.strip():
        raise JobSpecError("edit: the target prompt equals the source prompt, so there is nothing to edit")


def total_steps(job, options: EditOptions) -> int:
    inversions = 2 if options.inversion == "uniform" else 1  # plain DDIM, and the uniform branch's own
    return (inversions + 1) * job.steps


def run(task: TaskRun) -> JobResult:
    from pipelines.uniform_edit import uniform_edit
    from studio.images import open_image

    job, backbone, opts = task.job, task.backbone, task.options
    assert job.image is not None  # the registry guarantees it for this task
    source = open_image(job.image)
    rows = 5 if opts.inversion == "uniform" else 4  # source and target with CFG, and the uniform branch
    height, width = size_of(job, backbone, (source.height, source.width), rows=rows)
    with method_errors("edit"):
        output = uniform_edit(
            backbone,
            source,
            job.prompt,
            source_prompt=opts.source_prompt,
            inversion=opts.inversion,
            start=opts.start,
            levels=opts.levels,
            quantile=opts.quantile,
            cutoff=opts.cutoff,
            dilate=opts.dilate,
            num_inference_steps=job.steps,
            guidance_scale=job.guidance,
            sampler=job.sampler,
            height=height,
            width=width,
            **hooks(task),
        )
    return JobResult(job.replace(width=width, height=height), list(output.images))


TASK = TaskDeclaration(
    name="edit",
    summary="Edit a real image towards a target prompt: uniform attention maps (UAM) over MasaCtrl.",
    options=EditOptions,
    run=run,
    inputs=JobInputs(
        argument="image",
        argument_help="Image to edit (PNG, JPEG or WebP).",
        image="required",
        prompt_help="Target prompt: what the edited image should show.",
        negative_and_seed=False,
    ),
    schedule=Schedule(UNIFORM_EDIT.steps, UNIFORM_EDIT.guidance),
    steps=total_steps,
    check=check,
    needs_ddim=lambda job: REPLAYS_INVERSION,
)
