"""The job spec: one typed, versioned description of a studio run (a pydantic model).

Why: the CLI, the UI, batch manifests and the metadata embedded in every output all describe a run the
same way, so an output can be read back into the exact job that made it and re-run. The job's own fields
are checked here; what depends on the task (its options, whether it needs an image, the extra controls'
kinds and options) is checked against the task declarations in a `Registry` (the default one unless the
validation context names another), so the JSON Schema and the validator come from the same declarations.

A job has one primary task, whose options sit under `options.<task>`, and a list of extra `controls`
(each a `kind` and its `options`) that the runner adds to the task's pipeline call, so methods compose in
a job as they do in Python.

Version policy: `SCHEMA_VERSION` goes up when a field changes meaning or a field is added. Version 1 (no
`controls`) is read as version 2 with no extra controls. A newer version than we understand is refused
with an "upgrade" message rather than half-understood.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    Strict,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from studio.declarations import MAX_PATH, MAX_TEXT
from studio.errors import JobSpecError
from studio.registry import Registry, default_registry
from studio.safe_json import JsonError, parse_json
from studio.validation import one_line

SCHEMA_VERSION = 2
MAX_SEED = 2**64 - 1  # the range torch.Generator.manual_seed accepts
REQUIRED: tuple[str, ...] = ("version", "task", "model")

Size = Annotated[StrictInt | None, Field(ge=8, le=8192, multiple_of=8)]


class ControlSpec(BaseModel):
    """One extra control of a job: its kind (a declared control) and that control's options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: StrictStr = Field(description="The control's kind, e.g. 'uniform'.")
    options: dict[str, JsonValue] = Field(default_factory=dict, description="The control's options.")


class Job(BaseModel):
    """One run. `None` for seed/size means "choose": the runner records the value it chose in its result."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Diffusion Studio job")

    task: StrictStr = Field("generate", description="What to run.")
    model: StrictStr = Field(
        "toyworld",
        min_length=1,
        max_length=MAX_PATH,
        description="Model reference: 'toyworld', a hub id, a local diffusers folder or a .safetensors checkpoint.",
    )
    prompt: StrictStr = Field("", max_length=MAX_TEXT, description="Text prompt.")
    negative_prompt: StrictStr = Field("", max_length=MAX_TEXT, description="Negative prompt (used with CFG).")
    seed: StrictInt | None = Field(None, ge=0, le=MAX_SEED, description="Noise seed; null = random.")
    steps: StrictInt = Field(25, ge=1, le=1000, description="DDIM steps.")
    guidance: Annotated[float, Strict()] = Field(
        5.0, ge=0, le=100, allow_inf_nan=False, description="Classifier-free guidance scale."
    )
    width: Size = Field(None, description="Output width in pixels; null = the model's default (invert: the input's).")
    height: Size = Field(
        None, description="Output height in pixels; null = the model's default (invert: the input's)."
    )
    image: StrictStr | None = Field(
        None, max_length=MAX_PATH, description="Input image path (invert, visctrl target, mutual real source)."
    )
    options: dict[str, JsonValue] = Field(
        default_factory=dict, description="The primary task's options, under the task's name."
    )
    controls: tuple[ControlSpec, ...] = Field((), description="Extra controls added to the task's pipeline call.")
    version: Literal[2] = Field(SCHEMA_VERSION, description="Job spec schema version.")

    _registry: Registry = PrivateAttr(default_factory=default_registry)

    def __init__(self, /, registry: Registry | None = None, **data: Any) -> None:
        """Build and validate a job against `registry` (default: the default one); a bad value is one
        `JobSpecError` line."""
        context = {"registry": registry} if registry is not None else None
        try:
            self.__pydantic_validator__.validate_python(data, self_instance=self, context=context)
        except ValidationError as exc:
            raise JobSpecError(one_line(exc, type(self), "")) from None

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

    def replace(self, **changes: Any) -> Job:
        """A copy with some fields changed, validated again against the same registry."""
        return Job(self._registry, **{**self.model_dump(), **changes})

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        return {"version": data.pop("version"), **data}

    def to_json(self, *, indent: int | None = 2) -> str:
        import json

        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], registry: Registry | None = None) -> Job:
        """Build a job from parsed JSON (version 1 or 2), refusing unknown versions and fields clearly."""
        if not isinstance(data, Mapping):
            raise JobSpecError("invalid job: a job must be a JSON object")
        _check_version(data.get("version"))
        missing = [name for name in REQUIRED if name not in data]
        if missing:
            raise JobSpecError(f"invalid job: missing {', '.join(missing)}")
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            known = ", ".join(sorted(cls.model_fields))
            raise JobSpecError(f"invalid job: unknown field(s) {', '.join(unknown)}; known: {known}")
        if data["version"] == 1 and "controls" in data:
            raise JobSpecError("invalid job: 'controls' needs job spec version 2")
        return cls(registry, **{**data, "version": SCHEMA_VERSION})

    @classmethod
    def from_json(cls, text: str | bytes, registry: Registry | None = None) -> Job:
        """A job from JSON text (a UTF-8 byte-order mark is fine), size- and depth-limited."""
        try:
            data = parse_json(text, "job")
        except JsonError as exc:
            raise JobSpecError(f"invalid job: {str(exc).removeprefix('job: ').replace('not valid JSON', 'not JSON')}")
        return cls.from_dict(data, registry)


def _check_version(version: Any) -> None:
    if version is None:
        raise JobSpecError("invalid job: missing 'version'")
    if isinstance(version, bool) or not isinstance(version, int):
        raise JobSpecError(f"invalid job: 'version' must be an integer (got {version!r})")
    if version > SCHEMA_VERSION:
        raise JobSpecError(
            f"job spec version {version} is newer than this studio understands (up to {SCHEMA_VERSION});"
            " upgrade diffusion-studio"
        )
    if version < 1:
        raise JobSpecError(f"invalid job: unknown job spec version {version}")


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
