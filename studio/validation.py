"""pydantic's validation errors as the studio's one-line messages, with the valid range where there is one."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def one_line(exc: ValidationError, model: type[BaseModel], where: str) -> str:
    """The first error of `exc` as `invalid job: <where>.<key> ...`; a range error states the whole range."""
    error = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in (where, *error["loc"]) if part != "")
    kind = error["type"]
    got = error.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(model, error["loc"][:-1])
        return f"invalid job: unknown option {loc}; known: {', '.join(known) or 'none'}"
    if kind == "missing":
        return f"invalid job: {loc} is required"
    if kind in _RANGE_ERRORS:
        low, high = _range_of(model, error["loc"])
        return f"invalid job: {loc} must be {_describe(low, high)} (got {got!r})"
    if kind == "multiple_of":
        low, high = _range_of(model, error["loc"])
        step = error["ctx"]["multiple_of"]
        return f"invalid job: {loc} must be a multiple of {step} {_describe(low, high)} (got {got!r})"
    if kind == "value_error":  # our validators' own message, as written (it may quote names, e.g. "Euler a")
        return f"invalid job: {loc}: {str(error['ctx']['error'])}"
    return f"invalid job: {loc}: {error['msg'].lower()} (got {got!r})"


def _describe(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f"at least {low}" if low is not None else f"at most {high}"


def _field(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The FieldInfo at `loc` (through record tuples), or None."""
    info = None
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        info = fields[part]
        args = getattr(info.annotation, "__args__", ())
        current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), info.annotation)
    return info


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    if not loc:
        return list(model.model_fields)
    info = _field(model, loc)
    args = getattr(getattr(info, "annotation", None), "__args__", ())
    record = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return list(record.model_fields) if record else []


def _range_of(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, Any]:
    info = _field(model, loc)
    low = high = None
    for meta in getattr(info, "metadata", ()):
        low = getattr(meta, "ge", None) if getattr(meta, "ge", None) is not None else low
        low = getattr(meta, "gt", None) if getattr(meta, "gt", None) is not None else low
        high = getattr(meta, "le", None) if getattr(meta, "le", None) is not None else high
        high = getattr(meta, "lt", None) if getattr(meta, "lt", None) is not None else high
    return low, high
