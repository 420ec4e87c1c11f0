"""The job spec: one typed, versioned description of a studio run.

Why: the CLI, the UI, batch manifests and the metadata embedded in every output all describe a run the
same way, so an output can be read back into the exact job that made it and re-run. The JSON schema is
generated from the same field declarations the validator enforces, so the two cannot drift.

Version policy: `SCHEMA_VERSION` goes up when a field changes meaning or a required field is added. A
newer version than we understand is refused with an "upgrade" message rather than half-understood.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from studio.errors import JobSpecError

SCHEMA_VERSION = 1
# Tasks this version of the studio can run. Method tasks ("visctrl", "freecustom", ...) join as they land.
TASKS: tuple[str, ...] = ("generate", "invert", "mutual", "visctrl", "freecustom")
MAX_TEXT = 20_000
MAX_SEED = 2**64 - 1  # the range torch.Generator.manual_seed accepts
REQUIRED: tuple[str, ...] = ("version", "task", "model")


def _spec(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"schema": schema, "description": description}


@dataclass(frozen=True)
class Job:
    """One run. `None` for seed/size means "choose": the runner records the value it chose in its result."""

    task: str = field(default="generate", metadata=_spec({"type": "string", "enum": list(TASKS)}, "What to run."))
    model: str = field(
        default="toyworld",
        metadata=_spec(
            {"type": "string", "minLength": 1, "maxLength": 4096},
            "Model reference: 'toyworld', a hub id, a local diffusers folder or a .safetensors checkpoint.",
        ),
    )
    prompt: str = field(default="", metadata=_spec({"type": "string", "maxLength": MAX_TEXT}, "Text prompt."))
    negative_prompt: str = field(
        default="", metadata=_spec({"type": "string", "maxLength": MAX_TEXT}, "Negative prompt (used with CFG).")
    )
    seed: int | None = field(
        default=None,
        metadata=_spec({"type": ["integer", "null"], "minimum": 0, "maximum": MAX_SEED}, "Noise seed; null = random."),
    )
    steps: int = field(default=25, metadata=_spec({"type": "integer", "minimum": 1, "maximum": 1000}, "DDIM steps."))
    guidance: float = field(
        default=5.0,
        metadata=_spec({"type": "number", "minimum": 0, "maximum": 100}, "Classifier-free guidance scale."),
    )
    width: int | None = field(
        default=None,
        metadata=_spec(
            {"type": ["integer", "null"], "minimum": 8, "maximum": 8192, "multipleOf": 8},
            "Output width in pixels; null = the model's default (invert: the input's size).",
        ),
    )
    height: int | None = field(
        default=None,
        metadata=_spec(
            {"type": ["integer", "null"], "minimum": 8, "maximum": 8192, "multipleOf": 8},
            "Output height in pixels; null = the model's default (invert: the input's size).",
        ),
    )
    image: str | None = field(
        default=None,
        metadata=_spec(
            {"type": ["string", "null"], "maxLength": 4096},
            "Input image path (invert, visctrl target, mutual real source).",
        ),
    )
    options: dict[str, Any] = field(
        default_factory=dict,
        metadata=_spec({"type": "object"}, "Method options, keyed by method name (reserved for later tasks)."),
    )
    version: int = field(
        default=SCHEMA_VERSION,
        metadata=_spec({"type": "integer", "const": SCHEMA_VERSION}, "Job spec schema version."),
    )

    def __post_init__(self) -> None:
        for spec_field in dataclasses.fields(self):
            _check_value(spec_field.name, getattr(self, spec_field.name), spec_field.metadata["schema"])
        try:
            json.dumps(self.options, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise JobSpecError(f"invalid job: options must be plain JSON ({exc})") from exc
        if self.task in ("invert", "visctrl") and not self.image:
            raise JobSpecError(f"invalid job: the {self.task} task needs an input image")
        if self.task in ("generate", "freecustom") and self.image is not None:
            raise JobSpecError(f"invalid job: the {self.task} task takes no input image")

    def replace(self, **changes: Any) -> Job:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"version": data.pop("version"), **data}

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        """Build a job from parsed JSON, refusing unknown versions and unknown fields clearly."""
        if not isinstance(data, Mapping):
            raise JobSpecError("invalid job: a job spec must be a JSON object")
        _check_version(data.get("version"))
        missing = [name for name in REQUIRED if name not in data]
        if missing:
            raise JobSpecError(f"invalid job: missing {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise JobSpecError(
                f"invalid job: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if isinstance(values.get("guidance"), int) and not isinstance(values.get("guidance"), bool):
            values["guidance"] = float(values["guidance"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Job:
        from studio.safe_json import JsonError, parse_json

        try:
            data = parse_json(text, "invalid job")
        except JsonError as exc:
            raise JobSpecError(str(exc)) from exc
        return cls.from_dict(data)


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


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    raise AssertionError(f"schema kind {kind!r} has no checker")


def _check_value(name: str, value: Any, schema: Mapping[str, Any]) -> None:
    """Enforce the subset of JSON Schema our fields use: type, enum, const, bounds, multipleOf, lengths."""
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if not any(_type_ok(value, kind) for kind in kinds):
        wanted = " or ".join(k for k in kinds)
        raise JobSpecError(f"invalid job: {name} must be {wanted} (got {value!r})")
    if value is None:
        return
    if "const" in schema and value != schema["const"]:
        raise JobSpecError(f"invalid job: {name} must be {schema['const']!r} (got {value!r})")
    if "enum" in schema and value not in schema["enum"]:
        raise JobSpecError(f"invalid job: unknown {name} {value!r}; expected one of {', '.join(schema['enum'])}")
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None and not (low <= value <= high):
        raise JobSpecError(f"invalid job: {name} must be between {low} and {high} (got {value!r})")
    step = schema.get("multipleOf")
    if step is not None and value % step:
        raise JobSpecError(f"invalid job: {name} must be a multiple of {step} (got {value!r})")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise JobSpecError(f"invalid job: {name} must not be empty")
        if len(value) > schema.get("maxLength", math.inf):
            raise JobSpecError(f"invalid job: {name} is longer than {schema['maxLength']} characters")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a job spec, generated from the fields the validator enforces."""
    properties = {
        f.name: {**f.metadata["schema"], "description": f.metadata["description"]} for f in dataclasses.fields(Job)
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://diffusion-studio.local/schemas/job-v{SCHEMA_VERSION}.json",
        "title": "Diffusion Studio job",
        "type": "object",
        "properties": {"version": properties.pop("version"), **properties},
        "required": list(REQUIRED),
        "additionalProperties": False,
    }
