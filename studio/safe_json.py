"""Parse JSON that came from outside the studio, with size and nesting limits checked first.

Why: job files, the `studio_job` chunk of a PNG, model indexes and safetensors headers are all written
by someone else. Python's `json` raises `RecursionError` on a few thousand nested brackets and
`ValueError` on integers longer than 4,300 digits, and both would reach the user as tracebacks. Every
outside JSON goes through `parse_json`, which refuses such input with one line that names what was
being read. The nesting check is one linear pass over the text, so a hostile input costs no more than
reading it.
"""

from __future__ import annotations

import json
from typing import Any

from studio.errors import InputError

MAX_JSON_BYTES = 16 * 1024 * 1024  # far above any job or model index; a safetensors header has its own cap
MAX_JSON_DEPTH = 64  # a job nests 4 levels, a model index 2, a safetensors header 3


class JsonError(InputError):
    """Outside JSON that is malformed, too large or too deeply nested."""


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of JSON text, ignoring brackets inside strings; linear time."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(
    data: str | bytes,
    what: str,
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """`data` parsed as JSON, or a one-line `JsonError` saying what `what` is and what was wrong.

    A UTF-8 byte-order mark is accepted (editors on Windows write one); NaN and Infinity are not JSON
    and are refused.
    """
    if len(data) > max_bytes:
        raise JsonError(f"{what}: {len(data):,} bytes of JSON is over the {max_bytes:,}-byte limit")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"{what}: not UTF-8 text (byte {exc.start})") from exc
    text = data.removeprefix("\ufeff")
    depth = nesting_depth(text)
    if depth > max_depth:
        raise JsonError(f"{what}: JSON nested {depth} levels deep; at most {max_depth} are accepted")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise JsonError(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    except ValueError as exc:  # an integer past Python's int-conversion digit limit, or NaN/Infinity
        raise JsonError(f"{what}: {str(exc).splitlines()[0]}") from exc
    except RecursionError as exc:  # unreachable after the depth check; kept so no input can escape as one
        raise JsonError(f"{what}: JSON nested too deeply") from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
