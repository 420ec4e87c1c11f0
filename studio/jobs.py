"""The job: one typed, versioned description of a studio run, checked against the task declarations.

Why: the CLI, the UI, batch manifests and the metadata embedded in every output all describe a run the
same way, so an output can be read back into the exact job that made it and re-run. `JobSpec` checks the
job's own fields; `Job` adds what depends on the task (its options, whether it needs an image, the extra
controls' kinds and options), checked against the declarations in a `Registry`: the one passed in (or
the validation context's), else the default one. The JSON Schema comes from the same declarations.

A job has one primary task, whose options sit under `options.<task>`, and a list of extra `controls`
(each a `kind` and its `options`) that the runner adds to the task's pipeline call, so methods compose in
a job as they do in Python.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo, model_validator

from studio.job_spec import MAX_PATH, MAX_SEED, MAX_TEXT, REQUIRED, SCHEMA_VERSION, ControlSpec, JobSpec
from studio.registry import Registry, default_registry

__all__ = [
    "MAX_PATH",
    "MAX_SEED",
    "MAX_TEXT",
    "REQUIRED",
    "SCHEMA_VERSION",
    "ControlSpec",
    "Job",
    "json_schema",
    "tasks",
]


class Job(JobSpec):
    """A job whose task, options and controls are declared in its registry (`job.registry`)."""

    @model_validator(mode="after")
    def _check_against_registry(self, info: ValidationInfo) -> Job:
        registry = (info.context or {}).get("registry") or default_registry()
        self._registry = registry
        registry.check(self)
        return self

    @property
    def registry(self) -> Registry:
        """The registry this job was validated against (its task and controls are declared there)."""
        return self._registry


def tasks(registry: Registry | None = None) -> tuple[str, ...]:
    """The tasks a job can name."""
    return tuple((registry or default_registry()).tasks)


def json_schema(registry: Registry | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a job: pydantic's, with each task's and control's options."""
    from studio.schema import job_schema

    return job_schema(Job, registry or default_registry(), SCHEMA_VERSION)


def __getattr__(name: str) -> Any:
    if name == "TASKS":  # read lazily: the registry imports the task modules
        return tasks()
    raise AttributeError(name)
