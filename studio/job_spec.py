"""A job's fields as data: each field typed and bounded, and the JSON round trip with its versions.

Why a module below `studio.jobs`: the task declarations, the registry and the results refer to jobs, and
`studio.jobs.Job` refers to the registry (to check a job's task, options and controls). This module holds
what needs no registry, so every one of them can import it and none imports another in a circle.

Version policy: `SCHEMA_VERSION` goes up when a field changes meaning or a field is added. Version 1 (no
`controls`) is read as version 2 with no extra controls. A newer version than we understand is refused
with an "upgrade" message rather than half-understood.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, PrivateAttr, Strict, StrictInt, StrictStr
from pydantic import ValidationError, field_validator

from pipelines.sampler_names import DEFAULT_SAMPLER, canonical_sampler, sampler_names
from studio.errors import JobSpecError
from studio.safe_json import JsonError, parse_json
from studio.validation import one_line

SCHEMA_VERSION = 2
MAX_SEED = 2**64 - 1  # the range torch.Generator.manual_seed accepts
MAX_PATH = 4096  # characters of a file path in a job
MAX_TEXT = 20_000  # characters of a prompt or caption
REQUIRED: tuple[str, ...] = ("version", "task", "model")
MAX_BATCH_SIZE = 16  # images in one UNet call (each a CFG pair of rows); memory is checked for the batch too
MAX_BATCH_COUNT = 100  # UNet calls of one job, each a fresh batch: A1111's own limit

J = TypeVar("J", bound="JobSpec")
Size = Annotated[StrictInt | None, Field(ge=8, le=8192, multiple_of=8)]


class ControlSpec(BaseModel):
    """One extra control of a job: its kind (a declared control) and that control's options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: StrictStr = Field(description="The control's kind, e.g. 'uniform'.")
    options: dict[str, JsonValue] = Field(default_factory=dict, description="The control's options.")


class JobSpec(BaseModel):
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
    steps: StrictInt = Field(25, ge=1, le=1000, description="Sampling steps.")
    guidance: Annotated[float, Strict()] = Field(
        5.0, ge=0, le=100, allow_inf_nan=False, description="Classifier-free guidance scale."
    )
    width: Size = Field(None, description="Output width in pixels; null = the model's default (invert: the input's).")
    height: Size = Field(
        None, description="Output height in pixels; null = the model's default (invert: the input's)."
    )
    sampler: StrictStr = Field(
        DEFAULT_SAMPLER,
        description="Sampler, by our name or A1111's: " + ", ".join(sampler_names()) + ". Stored as our name.",
    )
    batch_size: StrictInt = Field(
        1, ge=1, le=MAX_BATCH_SIZE, description="Images per UNet call; image i has seed seed+i (A1111's rule)."
    )
    batch_count: StrictInt = Field(
        1, ge=1, le=MAX_BATCH_COUNT, description="UNet calls, each a batch; seeds continue from call to call."
    )
    image: StrictStr | None = Field(
        None, max_length=MAX_PATH, description="Input image path (invert, visctrl target, mutual real source)."
    )
    options: dict[str, JsonValue] = Field(
        default_factory=dict, description="The primary task's options, under the task's name."
    )
    controls: tuple[ControlSpec, ...] = Field((), description="Extra controls added to the task's pipeline call.")
    inputs: dict[StrictStr, Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{16}$")]] = Field(
        default_factory=dict,
        max_length=64,
        description="SHA-256 prefix of each input file by the path the job names it: recorded by a run, checked"
        " when the job runs again.",
    )
    version: Literal[2] = Field(SCHEMA_VERSION, description="Job spec schema version.")

    _registry: Any = PrivateAttr(default=None)  # what the job was checked against (`studio.jobs.Job` sets it)

    @field_validator("sampler")
    @classmethod
    def _canonical_sampler(cls, name: str) -> str:
        return canonical_sampler(name)  # A1111's "DPM++ 2M Karras" is stored as "dpmpp_2m_karras"

    @property
    def images_per_run(self) -> int:
        return self.batch_size * self.batch_count

    def __init__(self, /, registry: Any = None, **data: Any) -> None:
        """Build and validate; a subclass checks the task against `registry`. A bad value is one line."""
        context = {"registry": registry} if registry is not None else None
        try:
            self.__pydantic_validator__.validate_python(data, self_instance=self, context=context)
        except ValidationError as exc:
            raise JobSpecError(one_line(exc, type(self), "")) from None

    def replace(self: J, **changes: Any) -> J:
        """A copy with some fields changed, validated again (against the same registry)."""
        return type(self)(self._registry, **{**self.model_dump(), **changes})

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        return {"version": data.pop("version"), **data}

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls: type[J], data: Mapping[str, Any], registry: Any = None) -> J:
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
    def from_json(cls: type[J], text: str | bytes, registry: Any = None) -> J:
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
