"""How a task or an extra control is declared: once, with everything the studio derives from it.

A task module in `studio/tasks/` exposes `TASK = TaskDeclaration(...)`; a control module exposes
`CONTROL = ControlDeclaration(...)`. The registry finds them; the runner, the job schema, the CLI
commands and flags and the metadata's path handling are all read from these declarations, so adding a
method touches its task file (plus its control and pipeline) and nothing else in the studio.

Options models are pydantic models. A field's default, help (`description`) and range (`ge`/`le`) are
stated on the field, or taken from the method's settings dataclass next to its control or pipeline with
`setting(...)`, so the control, the pipeline, the job schema and the CLI share one default. Annotations
add what pydantic has no word for: `ImagePath` / `MaskPath` / `WeightPath` / `ModelFolder` (a field names a
file or a folder of model files: checked before any model loads, hashed and made portable in metadata), `Flag` (its CLI spelling), `Zipped` (a list
of records given on the CLI as parallel repeatable flags). A control's `Shortcut` gives it plain flags.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from pipelines.backbone import Backbone
    from pipelines.events import CancelToken, StepCallback
    from studio.job_spec import JobSpec as Job
    from studio.results import JobResult


class Options(BaseModel):
    """Base of every options model: immutable, unknown keys refused, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


@dataclass(frozen=True)
class ImagePath:
    """The field names an image file (PNG/JPEG/WebP)."""


@dataclass(frozen=True)
class MaskPath:
    """The field names a mask file; `of` names the sibling field (or "image", the job's) whose size it must have."""

    of: str | None = None
    label: str = "mask"  # how errors name it ("target mask", "reference mask")


@dataclass(frozen=True)
class WeightPath:
    """The field names a weight file (an adapter, a LoRA, residuals): checked by its bytes before any model
    loads (a pickle is refused unread), its content hashed with the job's inputs and its path made portable
    in metadata like an image's, so `studio run` re-creates the output or says which file changed."""

    label: str = "weights"  # how errors name it ("LoRA", "residuals")


@dataclass(frozen=True)
class ModelFolder:
    """The field names a folder of model files (insightface's ONNX face models): checked to be a folder before
    any model loads, its files' names and bytes hashed with the job's inputs, and its path made portable in
    metadata, so `studio run` with other face models says so instead of making another picture."""

    label: str = "model folder"


@dataclass(frozen=True)
class Flag:
    """CLI spelling of an option field when it is not `--kebab-case` of its name."""

    name: str | None = None  # e.g. "--weight"
    short: str | None = None  # e.g. "-r"
    negate: bool = False  # a True-by-default bool shown as `--no-<name>` (the field is its negation)
    help: str | None = None  # the flag's help when it differs from the field's description (negated flags)


@dataclass(frozen=True)
class Zipped:
    """A tuple of records given on the CLI as parallel repeatable flags, one flag per record field.

    The record field named `primary` gives the count; every other flag is given once per record or never.
    """

    primary: str
    item: str  # what one record is called in errors ("view", "reference")


def setting(settings: Any, name: str, **extra: Any) -> Any:
    """A pydantic field whose default, range and help come from a method's settings dataclass instance.

    Why: the control or pipeline that owns a setting states its default once (a frozen dataclass with
    `Annotated[..., Interval(...), doc(...)]` fields); the studio's options field must not restate it.
    """
    hints = typing.get_type_hints(type(settings), include_extras=True)
    kwargs: dict[str, Any] = {"default": getattr(settings, name)}
    for meta in getattr(hints[name], "__metadata__", ()):
        if isinstance(meta, annotated_types.DocInfo):
            kwargs["description"] = meta.documentation
        elif isinstance(meta, annotated_types.Interval):
            kwargs.update({k: v for k, v in dataclasses.asdict(meta).items() if v is not None})
    return Field(**(kwargs | extra))


@dataclass(frozen=True)
class Schedule:
    """A task's default steps and CFG (read from its pipeline's settings) and how its CLI describes them."""

    steps: int
    guidance: float
    steps_help: str = "Sampling steps."
    guidance_help: str = "CFG scale."


@dataclass(frozen=True)
class JobInputs:
    """Which of the job's own fields a task uses and how its command shows them.

    `argument` is the positional argument ("prompt" or "image"). The job's image is required, optional
    (a `--image/-i` flag) or unused; a task whose argument is the image takes its prompt as `--prompt/-p`.
    """

    argument: Literal["prompt", "image"]
    argument_help: str
    image: Literal["required", "optional", "none"] = "none"
    image_help: str = "Input image."
    prompt_help: str = "Prompt."
    negative_and_seed: bool = True  # False: the task draws no noise and takes no negative prompt
    size: Literal["width-height", "square"] = "width-height"  # "square": one `--size` sets both


@dataclass(frozen=True)
class TaskRun:
    """What a task's run function gets: the job, its validated options, the model and the extra controls."""

    job: Job
    options: Any  # the task's options model instance
    backbone: Backbone
    controls: Sequence[Any]  # attention_processors Controls built from the job's extra controls
    on_step: StepCallback
    cancel: CancelToken | None


@dataclass(frozen=True)
class TaskDeclaration:
    """One task, declared once; see the module docstring."""

    name: str
    summary: str  # the command's help: one line
    options: type[Options]
    run: Callable[[TaskRun], JobResult]
    inputs: JobInputs
    schedule: Schedule
    steps: Callable[[Job, Any], int] = lambda job, options: job.steps  # progress steps of the whole job
    check: Callable[[Job, Any], None] | None = None  # refuse a job the options model cannot judge alone
    # Why the job needs the DDIM sampler (it replays a DDIM trajectory), or None when any sampler serves;
    # a job naming another sampler is refused with this reason when it is validated, before any model loads.
    needs_ddim: Callable[[Job], str | None] = lambda job: None
    batches: bool = False  # takes batch size and count (its pipeline draws several images in one call)


@dataclass(frozen=True)
class ControlDeclaration:
    """An extra control a job adds to its primary task: its options and how to build it for a run."""

    kind: str
    summary: str
    options: type[Options]
    build: Callable[[Any, Job, Backbone], Sequence[Any]]  # (options, job, backbone) -> Controls
    # A control that changes the model for the run (weights swapped in, hooks) says how, as a context manager
    # (options, job, backbone, index in job.controls) -> yields its Controls; the runner exits it in `finally`.
    applied: Callable[[Any, Job, Backbone, int], AbstractContextManager[Sequence[Any]]] | None = None
    # Options name a LoRA-format file (`file`, `scale`): the runner loads it with the prompt's <lora:...> tags.
    loads_lora: bool = False
    shortcut: Shortcut | None = None  # plain flags on every task command, besides `--control KIND:...`


@dataclass(frozen=True)
class Shortcut:
    """Flags every task command takes to add a control without the `--control KIND:key=value` spelling.

    Each `primary` flag given adds one control. Every other flag is given once (shared by all of them) or
    once per primary flag. `PRIMARY:VALUE` sets the `suffix` field too (`--image-prompt ref.png:0.6`), as
    A1111 users write `<lora:name:0.6>`; a tail that is not a number stays part of the path.
    """

    primary: str
    flags: Mapping[str, str]  # option field -> its flag: {"image": "--image-prompt", "file": "--ip-adapter"}
    suffix: str | None = None
    help: Mapping[str, str] = dataclasses.field(default_factory=dict)  # option field -> flag help
