"""An example method declared the way a new method is: its control, its settings, its task and control.

Uniform attention: at the chosen self-attention sites and steps, the attention probabilities are replaced
by uniform ones, so every query takes the mean of the keys' values (optionally only inside a mask). It is
small enough to check against a one-line oracle, and it exercises every part of a declaration: a setting
with a default, range and help stated once (in `UniformSettings`), a file-path option (`mask`), a task
(`uniform`) with its own command, and an extra control (`uniform`) that composes with any task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from annotated_types import Interval, doc
from pydantic import Field
from torch import Tensor

from attention_processors import Control, SiteFilter, StepWindow
from attention_processors.control import AttentionCall
from attention_processors.masks import TokenMaskCache
from attention_processors.sites import Site
from attention_processors.state import StepState
from studio.declarations import (
    ControlDeclaration,
    JobInputs,
    MaskPath,
    Options,
    Schedule,
    TaskDeclaration,
    TaskRun,
    setting,
)
from studio.job_spec import MAX_PATH
from studio.results import JobResult
from studio.tasks.common import sampling, seed_of, size_of


@dataclass(frozen=True)
class UniformSettings:
    """Uniform attention's defaults, stated once."""

    start: Annotated[float, Interval(ge=0.0, le=1.0), doc("First step with uniform attention (fraction).")] = 0.0
    end: Annotated[float, Interval(ge=0.0, le=1.0), doc("Step where uniform attention stops (fraction).")] = 0.5
    levels: Annotated[int, Interval(ge=1, le=3), doc("Self-attention resolutions affected, highest first.")] = 1


UNIFORM = UniformSettings()


@dataclass
class UniformAttention(Control):
    steps: StepWindow = field(default_factory=lambda: StepWindow(UNIFORM.start, UNIFORM.end))
    sites: SiteFilter = field(default_factory=lambda: SiteFilter(kind="self", levels=tuple(range(UNIFORM.levels))))
    mask: Tensor | None = None  # [H0, W0]; uniform attention only inside it

    def __post_init__(self) -> None:
        self._mask = TokenMaskCache(self.mask) if self.mask is not None else None

    def active(self, site: Site, state: StepState) -> bool:
        return state.branch == "denoise" and self.sites.matches(site) and self.steps.contains(state)

    def edit_output(self, call: AttentionCall, output: Tensor) -> Tensor:
        uniform = call.value.mean(dim=2, keepdim=True).expand_as(output)  # [B, H, Lq, D]
        if self._mask is None:
            return uniform
        inside = self._mask.at(call.spatial_size, output.device)[None, None, :, None].to(output.dtype)  # [1,1,Lq,1]
        return inside * uniform + (1 - inside) * output


class UniformOptions(Options):
    start: float = setting(UNIFORM, "start")
    end: float = setting(UNIFORM, "end")
    levels: int = setting(UNIFORM, "levels")
    mask: Annotated[str | None, MaskPath(label="uniform mask")] = Field(
        None, max_length=MAX_PATH, description="Mask where attention becomes uniform (default: everywhere)."
    )


def build(options: UniformOptions, job, backbone) -> list[Control]:
    from studio.masks import load_mask

    mask = load_mask(options.mask, name="uniform mask") if options.mask else None
    sites = SiteFilter(kind="self", levels=tuple(range(options.levels)))
    return [UniformAttention(StepWindow(options.start, options.end), sites, mask)]


def run(task: TaskRun) -> JobResult:
    from pipelines.text_to_image import generate

    job = task.job
    seed = seed_of(job)
    height, width = size_of(job, task.backbone)
    own = build(task.options, job, task.backbone)
    kwargs = sampling(task, seed, height, width) | {"controls": [*own, *task.controls]}
    output = generate(task.backbone, job.prompt, **kwargs)
    return JobResult(job.replace(seed=seed, width=width, height=height), list(output.images))


TASK = TaskDeclaration(
    name="uniform",
    summary="Generate with uniform self-attention at chosen sites and steps.",
    options=UniformOptions,
    run=run,
    inputs=JobInputs(argument="prompt", argument_help="Text prompt."),
    schedule=Schedule(steps=25, guidance=5.0),
)
CONTROL = ControlDeclaration(
    kind="uniform",
    summary="Uniform self-attention at chosen sites and steps.",
    options=UniformOptions,
    build=build,
)
