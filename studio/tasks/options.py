"""Typed method options from a job's JSON, with one-line errors naming the bad key."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from studio.errors import JobSpecError

T = TypeVar("T")


def parse_options(cls: type[T], raw: Any, method: str) -> T:
    """Build the options dataclass `cls` from `raw` (a JSON object), checking names and types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise JobSpecError(f"invalid job: options.{method} must be an object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise JobSpecError(
            f"invalid job: unknown {method} option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(value, hints[name], f"options.{method}.{name}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise JobSpecError(f"invalid job: options.{method}: {exc}") from exc


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, where)
            except JobSpecError:
                continue
        raise JobSpecError(f"invalid job: {where} has the wrong type ({value!r})")
    if hint is type(None):
        if value is None:
            return None
        raise JobSpecError(f"invalid job: {where} must be null")
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise JobSpecError(f"invalid job: {where} must be a list")
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return parse_options(hint, value, where.removeprefix("options."))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise JobSpecError(f"invalid job: {where} must be {getattr(hint, '__name__', hint)} (got {value!r})")


def to_plain(options: Any) -> dict[str, Any]:
    """A dataclass of options as plain JSON (tuples as lists), for embedding in the job."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(options)
