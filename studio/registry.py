"""The registry: every task and extra control the studio knows, found from their declarations.

Why: the runner, the job validator and schema, the CLI and the metadata must agree on what a task is.
They all read one `Registry`. It is immutable; `default_registry()` discovers the declarations in the
`studio.tasks` package (a module exposing `TASK` or `CONTROL`), so a new task file needs no other edit,
and tests build their own with `default_registry().with_declarations(...)`.
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from pipelines.sampler_names import DEFAULT_SAMPLER
from studio.declarations import (
    ControlDeclaration,
    ImagePath,
    MaskPath,
    ModelFolder,
    TaskDeclaration,
    WeightPath,
    Zipped,
)
from studio.errors import JobSpecError
from studio.validation import one_line

if TYPE_CHECKING:
    from studio.job_spec import ControlSpec
    from studio.job_spec import JobSpec as Job


@dataclass(frozen=True)
class Registry:
    """The tasks (by name) and extra controls (by kind) a studio can run; immutable, built by value."""

    tasks: Mapping[str, TaskDeclaration] = field(default_factory=dict)
    controls: Mapping[str, ControlDeclaration] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", MappingProxyType(dict(self.tasks)))
        object.__setattr__(self, "controls", MappingProxyType(dict(self.controls)))

    def with_declarations(self, *declarations: TaskDeclaration | ControlDeclaration) -> Registry:
        """A new registry with these declarations added (or replacing ones of the same name)."""
        tasks, controls = dict(self.tasks), dict(self.controls)
        for declaration in declarations:
            if isinstance(declaration, TaskDeclaration):
                tasks[declaration.name] = declaration
            else:
                controls[declaration.kind] = declaration
        return Registry(tasks, controls)

    def task(self, name: str) -> TaskDeclaration:
        try:
            return self.tasks[name]
        except KeyError:
            raise JobSpecError(
                f"invalid job: unknown task {name!r}; expected one of {', '.join(self.tasks)}"
            ) from None

    def control(self, kind: str) -> ControlDeclaration:
        try:
            return self.controls[kind]
        except KeyError:
            known = ", ".join(self.controls) or "none"
            raise JobSpecError(f"invalid job: unknown control kind {kind!r}; known: {known}") from None

    def task_options(self, job: Job) -> Any:
        """The job's primary-task options as its declared model (validated; defaults filled in)."""
        declaration = self.task(job.task)
        return validate_options(declaration.options, job.options.get(job.task), f"options.{job.task}")

    def control_options(self, spec: ControlSpec, index: int) -> Any:
        declaration = self.control(spec.kind)
        return validate_options(declaration.options, spec.options, f"controls[{index}].{spec.kind}")

    def check(self, job: Job) -> None:
        """Refuse a job this registry cannot run: unknown task, options or controls, a missing image."""
        declaration = self.task(job.task)
        unused = sorted(set(job.options) - {job.task})
        if unused:
            raise JobSpecError(f"invalid job: the {job.task} task does not use option(s) {', '.join(unused)}")
        image = declaration.inputs.image
        if image == "required" and not job.image:
            raise JobSpecError(f"invalid job: the {job.task} task needs an input image")
        if image == "none" and job.image is not None:
            raise JobSpecError(f"invalid job: the {job.task} task takes no input image")
        reason = declaration.needs_ddim(job)
        if reason and job.sampler != DEFAULT_SAMPLER:
            raise JobSpecError(f"invalid job: {job.task} needs the DDIM sampler, not {job.sampler!r}: {reason}")
        if not declaration.batches and job.images_per_run > 1:
            raise JobSpecError(f"invalid job: the {job.task} task makes one image per run; batch size and count are 1")
        options = self.task_options(job)
        if declaration.check is not None:
            declaration.check(job, options)
        for index, spec in enumerate(job.controls):
            self.control_options(spec, index)

    def file_fields(self, job: Job) -> list[tuple[tuple[Any, ...], Any]]:
        """Every option value that names a file, as (path in `job.to_dict()`, marker)."""
        found = []
        task = self.tasks.get(job.task)
        if task is not None and job.task in job.options:
            found += _file_fields(task.options, job.options[job.task], ("options", job.task))
        for i, spec in enumerate(job.controls):
            control = self.controls.get(spec.kind)
            if control is not None:
                found += _file_fields(control.options, spec.options, ("controls", i, "options"))
        return found


def validate_options(model: type[BaseModel], raw: Any, where: str) -> Any:
    """`raw` (plain JSON) as `model`, or a one-line `JobSpecError` naming the bad key and its valid range."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise JobSpecError(f"invalid job: {where} must be an object")
    try:
        return model.model_validate_json(json.dumps(raw, allow_nan=False))
    except ValidationError as exc:
        raise JobSpecError(one_line(exc, model, where)) from None
    except ValueError as exc:  # NaN or infinity
        raise JobSpecError(f"invalid job: {where}: {exc}") from None


def _file_fields(model: type[BaseModel], raw: Any, prefix: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], Any]]:
    if not isinstance(raw, Mapping):
        return []
    found = []
    for name, info in model.model_fields.items():
        if name not in raw:
            continue
        marker = next((m for m in info.metadata if isinstance(m, (ImagePath, MaskPath, WeightPath, ModelFolder))), None)
        if marker is not None and isinstance(raw[name], str):
            found.append(((*prefix, name), marker))
        record = _record_model(info)
        if record is not None and isinstance(raw[name], list):
            for i, item in enumerate(raw[name]):
                found += _file_fields(record, item, (*prefix, name, i))
    return found


def _record_model(info: Any) -> type[BaseModel] | None:
    """The record model of a `Zipped` tuple field (`tuple[View, ...]`), else None."""
    if not any(isinstance(m, Zipped) for m in info.metadata):
        return None
    (record, *_) = info.annotation.__args__
    return record


def discover(package: str) -> list[TaskDeclaration | ControlDeclaration]:
    """The `TASK` and `CONTROL` declarations of every module in `package`, by module name."""
    module = importlib.import_module(package)
    found: list[TaskDeclaration | ControlDeclaration] = []
    for entry in sorted(pkgutil.iter_modules(module.__path__), key=lambda e: e.name):
        member = importlib.import_module(f"{package}.{entry.name}")
        found += [d for d in (getattr(member, "TASK", None), getattr(member, "CONTROL", None)) if d is not None]
    return found


@functools.cache
def default_registry() -> Registry:
    """The tasks and controls declared in `studio.tasks` (generate and invert first, then by module name)."""
    declarations = discover("studio.tasks")
    first = {"generate": 0, "invert": 1}
    declarations.sort(key=lambda d: first.get(getattr(d, "name", ""), 2))
    return Registry().with_declarations(*declarations)
