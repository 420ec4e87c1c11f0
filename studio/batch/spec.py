"""The batch spec: one TOML or JSON file that says what to run over which inputs, and where to.

Why its `job` part is a job: every task in the registry is then batchable with no per-task code. An
item's job is the spec's job with the item's own input put in (its image for tasks that take one, its
prompt for a prompt list), its mask by the naming rule, its seed by the seed rule, and its per-item
overrides; that job is validated like any other, so a bad option is refused before anything runs.

The spec's fingerprint (a hash of its canonical JSON, with paths made absolute) is what the manifest
remembers, so an output folder is never resumed with another spec's settings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictInt, StrictStr, ValidationError

from studio.errors import InputError

SPEC_VERSION = 1
SPEC_NAME = "batch.json"  # the spec a flag-built batch writes beside its outputs


class BatchSpecError(InputError):
    """A batch spec that cannot run: one line naming the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Inputs(_Strict):
    """Where the items come from: images in a folder (by glob), a list of images, or a prompt list."""

    folder: StrictStr | None = Field(None, description="A folder of input images.")
    glob: StrictStr = Field("*", description="Which files of the folder are inputs (pathlib glob).")
    files: list[StrictStr] | None = Field(None, description="Input images, listed.")
    prompts: StrictStr | None = Field(
        None, description="A prompt list (one per line, or CSV/JSONL with a 'prompt' column) for tasks that take none."
    )


class Masks(_Strict):
    """Which task option gets a mask, and the naming rule that finds it (None: automatic)."""

    option: StrictStr = Field(description="The task option that takes the mask, e.g. 'source_mask'.")
    pattern: StrictStr | None = Field(
        "masks/{stem}.png",
        description="The mask's path relative to the inputs folder ({stem}, {name}); null = automatic (option unset).",
    )


class SeedRule(_Strict):
    """`fixed`: every item gets `base`; `derived`: a seed from `base` and the item's key, the same on every run."""

    rule: Literal["fixed", "derived"] = "derived"
    base: StrictInt = Field(0, ge=0, le=2**32 - 1)


class BatchSpec(_Strict):
    """A whole batch. Relative paths are relative to the spec file's folder (or the current folder)."""

    version: Literal[1] = SPEC_VERSION
    job: dict[str, JsonValue] = Field(description="The job every item runs (a studio job without its input).")
    inputs: Inputs
    masks: Masks | None = None
    overrides: StrictStr | None = Field(None, description="A CSV or JSONL of per-item prompts or options.")
    out: StrictStr = Field(description="The output folder; the manifest sits in it.")
    seed: SeedRule = SeedRule()
    group_size: StrictInt = Field(
        1, ge=1, le=64, description="Items sharing their settings run as one UNet batch of up to this many (generate)."
    )

    def resolved(self, base: Path) -> BatchSpec:
        """The spec with every path made absolute against `base`, as the fingerprint and the workers see it."""

        def absolute(path: str | None) -> str | None:
            return None if path is None else str((base / Path(path).expanduser()).resolve())

        inputs = self.inputs.model_copy(
            update={
                "folder": absolute(self.inputs.folder),
                "files": None if self.inputs.files is None else [absolute(f) for f in self.inputs.files],
                "prompts": absolute(self.inputs.prompts),
            }
        )
        return self.model_copy(
            update={"inputs": inputs, "overrides": absolute(self.overrides), "out": absolute(self.out)}
        )

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def fingerprint(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def parse_spec(data: Any, where: str) -> BatchSpec:
    """`data` (parsed TOML/JSON) as a spec, or a one-line `BatchSpecError` naming the first bad field."""
    if not isinstance(data, dict):
        raise BatchSpecError(f"{where}: a batch spec is a table/object")
    try:
        return BatchSpec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "spec"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        raise BatchSpecError(f"{where}: {field}: {message}") from None


def load_spec(path: Path) -> BatchSpec:
    """Read a spec file (TOML if it ends in .toml, else JSON), with paths resolved against its folder."""
    import tomllib

    from studio.safe_json import JsonError, parse_json

    if not path.is_file():
        raise BatchSpecError(f"{path}: no such spec file")
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8")) if path.suffix.lower() == ".toml" else parse_json(raw, str(path))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, JsonError) as exc:
        raise BatchSpecError(f"{path}: not a valid spec file ({str(exc).splitlines()[0]})") from None
    return parse_spec(data, str(path)).resolved(path.resolve().parent)
