"""Each task's form, derived from its declaration: which widget each job field and option field gets.

Why a module without gradio: the form is read from the task's typed options model (its defaults, help,
ranges and the `ImagePath`/`MaskPath`/`Zipped` markers), so a task added later gets its form with no UI
code of its own. Keeping the derivation free of gradio lets tests check it, and keeps one place that says
how a field is shown: bounded numbers are sliders, bools checkboxes, image paths uploads, mask paths a
painting canvas over their image, and `Zipped` records a few numbered slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from studio.declarations import ImagePath, MaskPath, TaskDeclaration, Zipped
from studio.jobs import Job

Kind = Literal["text", "int", "float", "slider", "checkbox", "image", "mask"]
RECORD_SLOTS = 3  # record slots a form shows for a `Zipped` list (fewer when the list allows fewer)
MAX_SLIDER_SPAN = 10_000  # a bounded number with a wider range is a number box: a slider could not hit a value

IMAGE_KEY = "image"  # the job's own input image


@dataclass(frozen=True)
class FieldSpec:
    """One widget of a task's form. `key` names where its value goes in the job (see `ui.form_job`)."""

    key: str  # "prompt", "seed", "image", "opt.start", "opt.references.0.mask", ...
    label: str
    kind: Kind
    default: Any = None
    info: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    integer: bool = False
    required: bool = False
    mask_of: str | None = None  # the key of the image a mask is painted on (None: a blank canvas)
    section: str = "job"  # "job", "options", or a record slot's title ("reference 1")


def option_key(name: str, index: int | None = None, sub: str | None = None) -> str:
    return f"opt.{name}" if index is None else f"opt.{name}.{index}.{sub}"


def _marker(info: FieldInfo, kind: type) -> Any:
    return next((m for m in info.metadata if isinstance(m, kind)), None)


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for meta in info.metadata:
        low = next((v for v in (getattr(meta, "ge", None), getattr(meta, "gt", None)) if v is not None), low)
        high = next((v for v in (getattr(meta, "le", None), getattr(meta, "lt", None)) if v is not None), high)
    return low, high


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _base_type(info: FieldInfo) -> type:
    args = [a for a in getattr(info.annotation, "__args__", (info.annotation,)) if a is not type(None)]
    return args[0]


def _slider_step(low: float, high: float, integer: bool) -> float:
    if integer:
        return 1
    return 10.0 ** math.floor(math.log10((high - low) / 100)) if high > low else 0.01


def number_spec(key: str, label: str, info: FieldInfo, default: Any, section: str, help_text: str = "") -> FieldSpec:
    """A slider when the range is bounded and narrow enough to pick from, else a number box."""
    integer = _base_type(info) is int
    low, high = _bounds(info)
    text = help_text or info.description or ""
    if low is not None and high is not None and high - low <= MAX_SLIDER_SPAN:
        step = _slider_step(low, high, integer)
        return FieldSpec(key, label, "slider", default, text, low, high, step, integer, section=section)
    kind: Kind = "int" if integer else "float"
    return FieldSpec(key, label, kind, default, text, low, high, integer=integer, section=section)


def _field_spec(key: str, name: str, info: FieldInfo, section: str, mask_of: str | None) -> FieldSpec:
    default = None if info.default is PydanticUndefined else info.default
    required = info.default is PydanticUndefined
    text = info.description or ""
    if _marker(info, ImagePath):
        return FieldSpec(key, _label(name), "image", None, text, required=required, section=section)
    if _marker(info, MaskPath):
        return FieldSpec(key, _label(name), "mask", None, text, mask_of=mask_of, section=section)
    kind = _base_type(info)
    if kind is bool:
        return FieldSpec(key, _label(name), "checkbox", default, text, section=section)
    if kind in (int, float):
        return number_spec(key, _label(name), info, default, section)
    return FieldSpec(key, _label(name), "text", default or "", text, required=required, section=section)


def _mask_owner(info: FieldInfo, record: dict[str, str] | None) -> str | None:
    """The key of the image a mask field is painted on: its record's field, an option, or the job's image."""
    marker = _marker(info, MaskPath)
    if marker is None or marker.of is None:
        return None
    if record is not None and marker.of in record:
        return record[marker.of]
    return IMAGE_KEY if marker.of == IMAGE_KEY else option_key(marker.of)


def option_specs(task: TaskDeclaration) -> list[FieldSpec]:
    """The widgets of the task's options model, in declaration order; `Zipped` lists as numbered slots."""
    specs: list[FieldSpec] = []
    for name, info in task.options.model_fields.items():
        zipped = _marker(info, Zipped)
        if zipped is None:
            specs.append(_field_spec(option_key(name), name, info, "options", _mask_owner(info, None)))
            continue
        (record, *_) = info.annotation.__args__
        limit = next((m.max_length for m in info.metadata if getattr(m, "max_length", None)), RECORD_SLOTS)
        for index in range(min(RECORD_SLOTS, limit)):
            keys = {sub: option_key(name, index, sub) for sub in record.model_fields}
            section = f"{zipped.item} {index + 1}"
            for sub, sub_info in record.model_fields.items():
                spec = _field_spec(keys[sub], sub, sub_info, section, _mask_owner(sub_info, keys))
                if sub == zipped.primary and index > 0:  # only the first record of a required list is required
                    spec = FieldSpec(**{**spec.__dict__, "required": False})
                specs.append(spec)
    return specs


def job_specs(task: TaskDeclaration) -> list[FieldSpec]:
    """The job's own fields this task uses, with the task's defaults and help (model aside: see the app)."""
    inputs, schedule, fields = task.inputs, task.schedule, Job.model_fields
    specs: list[FieldSpec] = []
    if inputs.image != "none":
        text = inputs.argument_help if inputs.argument == "image" else inputs.image_help
        specs.append(FieldSpec(IMAGE_KEY, "Image", "image", None, text, required=inputs.image == "required"))
    prompt_help = inputs.argument_help if inputs.argument == "prompt" else inputs.prompt_help
    specs.append(FieldSpec("prompt", "Prompt", "text", "", prompt_help))
    if inputs.negative_and_seed:
        negative_help = fields["negative_prompt"].description or ""
        specs.append(FieldSpec("negative_prompt", "Negative prompt", "text", "", negative_help))
        specs.append(
            FieldSpec(
                "seed",
                "Seed",
                "int",
                -1,
                "Noise seed; -1 = random (the chosen seed is recorded).",
                minimum=-1,
                integer=True,
            )
        )
    specs.append(number_spec("steps", "Steps", fields["steps"], schedule.steps, "job", schedule.steps_help))
    specs.append(
        number_spec("guidance", "Guidance", fields["guidance"], schedule.guidance, "job", schedule.guidance_help)
    )
    _, largest = _bounds(fields["width"])
    names = ("size",) if inputs.size == "square" else ("width", "height")
    for name in names:
        text = "Pixels, a multiple of 8; 0 = the model's default."
        specs.append(FieldSpec(name, _label(name), "int", 0, text, minimum=0, maximum=largest, integer=True))
    return specs


def form_specs(task: TaskDeclaration) -> list[FieldSpec]:
    """Every widget of the task's form: the job's fields, then the task's options."""
    return [*job_specs(task), *option_specs(task)]
