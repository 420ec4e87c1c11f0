"""The job's JSON Schema: pydantic's schema of `Job`, with the registry's tasks and controls filled in.

Why: `Job` validates its task-dependent parts against a registry at run time, so its static pydantic
schema says only "an object" for `options` and a string for `task`. This adds what the registry knows:
the task names, each task's options schema under `options.<task>`, and each control kind's options,
as `if`/`then` branches a JSON Schema validator checks, so editors can validate and complete a job file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from studio.registry import Registry


def job_schema(job_model: type[BaseModel], registry: Registry, version: int) -> dict[str, Any]:
    schema = job_model.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})
    properties = {name: _nullable(prop) for name, prop in schema["properties"].items()}
    properties["task"]["enum"] = list(registry.tasks)
    branches = []
    for name, task in registry.tasks.items():
        options = _inline(task.options.model_json_schema(), defs)
        defs[f"{name}_options"] = options
        branches.append(
            {
                "if": {"properties": {"task": {"const": name}}},
                "then": {
                    "properties": {
                        "options": {
                            "type": "object",
                            "properties": {name: {"$ref": f"#/$defs/{name}_options"}},
                            "additionalProperties": False,
                        }
                    }
                },
            }
        )
    kinds = []
    for kind, control in registry.controls.items():
        defs[f"{kind}_control"] = _inline(control.options.model_json_schema(), defs)
        kinds.append(
            {
                "if": {"properties": {"kind": {"const": kind}}},
                "then": {"properties": {"options": {"$ref": f"#/$defs/{kind}_control"}}},
            }
        )
    if kinds:
        defs["ControlSpec"]["properties"]["kind"]["enum"] = list(registry.controls)
        defs["ControlSpec"]["allOf"] = kinds
    else:
        properties["controls"]["maxItems"] = 0  # no control kind is declared: none can be added
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://diffusion-studio.local/schemas/job-v{version}.json",
        **schema,
        "properties": {"version": properties.pop("version"), **properties},
        "required": ["version", "task", "model"],
        "allOf": branches,
        "$defs": defs,
    }


def _inline(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Move a sub-schema's own `$defs` (record models such as a reference) into the job's."""
    defs.update(schema.pop("$defs", {}))
    return schema


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    """pydantic's `anyOf: [X, {type: null}]` as X with `type: [X's type, "null"]`, the plainer JSON Schema."""
    options = prop.get("anyOf")
    if not options or len(options) != 2 or {"type": "null"} not in options:
        return prop
    (other,) = [o for o in options if o != {"type": "null"}]
    if "type" not in other:
        return prop
    rest = {k: v for k, v in prop.items() if k != "anyOf"}
    return {**other, **rest, "type": [other["type"], "null"]}
