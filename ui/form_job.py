"""A form's values as a job, and a job as a form's values: the UI's half of "one job, every entry point".

Why: the UI must run exactly the job the CLI would run for the same settings, so the form's values are
turned into the same `Job` (same fields, same options dict with every option present) and validated by
the same registry. Painted masks become PNG files, because a job names its masks by path and its
metadata must be re-runnable. Reading a job back into a form fills every non-file field; files named
by a job from another machine are not fetched from its paths (a dropped PNG must not make the server
serve arbitrary local files), so the user re-attaches them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from studio.declarations import TaskDeclaration, Zipped
from studio.errors import InputError
from studio.jobs import SCHEMA_VERSION, Job
from studio.registry import Registry
from ui.form_spec import IMAGE_KEY, FieldSpec, form_specs, option_key

MaskWriter = Callable[[np.ndarray], str]  # a [H, W] bool mask -> the path of the PNG it was written to


def painted_mask(value: Any, size: tuple[int, int] | None) -> np.ndarray | None:
    """The strokes painted on an image editor as a [H, W] bool mask at `size` (width, height), or None.

    `value` is gradio's `EditorValue` as numpy arrays: a mask is every pixel any layer painted (alpha > 0).
    Nothing painted means no mask (the task's automatic mask is used).
    """
    if value is None or isinstance(value, (str, Path)):
        return None
    layers = [np.asarray(layer) for layer in (value.get("layers") or []) if layer is not None]
    painted = [layer[..., 3] > 0 if layer.ndim == 3 and layer.shape[2] == 4 else layer.any(-1) for layer in layers]
    if not painted or not any(p.any() for p in painted):
        return None
    mask = np.logical_or.reduce(painted)
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        from PIL import Image

        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
        mask = np.asarray(resized) > 127
    return mask


def _image_size(path: Any) -> tuple[int, int] | None:
    if not path:
        return None
    from studio.images import open_image

    return open_image(path).size


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(spec: FieldSpec, value: Any) -> Any:
    if value is None or value == "":
        return spec.default
    try:
        return round(float(value)) if spec.integer else float(value)
    except (TypeError, ValueError):
        raise InputError(f"{spec.label.lower()}: {value!r} is not a number") from None


def _value(spec: FieldSpec, values: Mapping[str, Any], write_mask: MaskWriter) -> Any:
    """One field's job value: numbers typed, blank optional text as None, paths as str, masks written."""
    raw = values.get(spec.key)
    if spec.kind == "image":
        return str(raw) if raw else None
    if spec.kind == "mask":
        if not isinstance(raw, Mapping) or not raw.get("layers"):
            return None  # nothing painted: the task's automatic mask
        owner = values.get(spec.mask_of) if spec.mask_of else None
        mask = painted_mask(raw, _image_size(owner))
        return write_mask(mask) if mask is not None else None
    if spec.kind == "checkbox":
        return bool(raw)
    if spec.kind in ("int", "float", "slider"):
        return _number(spec, raw)
    if raw is None:  # a field the form did not send keeps its default (e.g. `--inversion`'s "ddim")
        return spec.default
    return _text(raw)


def job_from_form(task: TaskDeclaration, registry: Registry, values: Mapping[str, Any], write_mask: MaskWriter) -> Job:
    """The job the form describes, validated against `registry` (raises a one-line `StudioError`)."""
    specs = {spec.key: spec for spec in form_specs(task)}
    got = {key: _value(spec, values, write_mask) for key, spec in specs.items()}
    fields: dict[str, Any] = {"task": task.name, "model": _text(values.get("model")) or "toyworld"}
    fields |= {"prompt": got["prompt"], "steps": got["steps"], "guidance": got["guidance"]}
    if IMAGE_KEY in got and got[IMAGE_KEY] is not None:
        fields["image"] = got[IMAGE_KEY]
    if "seed" in got:
        fields |= {"negative_prompt": got["negative_prompt"], "seed": None if got["seed"] < 0 else got["seed"]}
    if "size" in got:
        fields |= {"width": got["size"] or None, "height": got["size"] or None}
    else:
        fields |= {"width": got["width"] or None, "height": got["height"] or None}
    options = _options(task, got)
    if options:
        fields["options"] = {task.name: options}
    return Job.from_dict({"version": SCHEMA_VERSION, **fields, "controls": []}, registry)


def _optional_text(value: Any, default: Any) -> Any:
    return None if value == "" and default is None else value


def _options(task: TaskDeclaration, got: Mapping[str, Any]) -> dict[str, Any]:
    """Every option field, as the CLI writes it: records only for slots whose primary field is filled."""
    options: dict[str, Any] = {}
    for name, info in task.options.model_fields.items():
        zipped = next((m for m in info.metadata if isinstance(m, Zipped)), None)
        if zipped is None:
            options[name] = _optional_text(got[option_key(name)], info.default)
            continue
        (record, *_) = info.annotation.__args__
        records = []
        index = 0
        while option_key(name, index, zipped.primary) in got:
            if got[option_key(name, index, zipped.primary)]:
                records.append(
                    {
                        sub: _optional_text(got[option_key(name, index, sub)], sub_info.default)
                        for sub, sub_info in record.model_fields.items()
                    }
                )
            index += 1
        options[name] = records
    return options


def form_from_job(task: TaskDeclaration, job: Job) -> tuple[dict[str, Any], list[str]]:
    """The form values of `job` (non-file fields), and the labels of the files the user must re-attach."""
    data = job.to_dict()
    options = data["options"].get(task.name, {})
    values: dict[str, Any] = {"model": job.model}
    missing: list[str] = []
    for spec in form_specs(task):
        value = _job_value(spec.key, data, options)
        if spec.kind in ("image", "mask"):
            if value:
                missing.append(
                    f"{spec.section} {spec.label.lower()}"
                    if spec.section not in ("job", "options")
                    else spec.label.lower()
                )
            continue
        if spec.key == "seed":
            value = -1 if value is None else value
        elif spec.key in ("width", "height", "size"):
            value = value or 0
        elif value is None:
            value = spec.default if spec.kind != "text" else ""
        values[spec.key] = value
    return values, missing


def _job_value(key: str, data: Mapping[str, Any], options: Mapping[str, Any]) -> Any:
    if key == "size":
        return data.get("width")
    if not key.startswith("opt."):
        return data.get(key)
    parts = key.split(".")[1:]
    if len(parts) == 1:
        return options.get(parts[0])
    name, index, sub = parts
    records = options.get(name) or []
    return records[int(index)].get(sub) if int(index) < len(records) else None
