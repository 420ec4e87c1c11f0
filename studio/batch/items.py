"""A spec's items: each one's key, its job and its output path, decided before anything runs.

Why here and all at once: a bad spec (unknown task or option, a wrong type, an empty folder, an override
for a file that is not there) must be refused with one line before any model loads, and every engine and
every resume must see the same items under the same keys with the same output paths, so a redone item
replaces its own file and nothing else.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.batch.spec import BatchSpec, BatchSpecError
from studio.errors import JobSpecError
from studio.registry import Registry

MAX_ITEMS = 1_000_000


@dataclass(frozen=True)
class Item:
    """One unit of work: `job` is a plain job dict (picklable for workers); `problem` fails it before it runs."""

    key: str
    job: dict[str, Any]
    output: str
    problem: str | None = None  # e.g. its mask is missing: recorded as the item's error, the batch goes on


def derived_seed(base: int, key: str) -> int:
    """The item's seed from the base seed and its key: the same on every run, engine and machine."""
    return int(hashlib.sha256(f"{base}:{key}".encode()).hexdigest()[:8], 16) % 2**32


def plan_items(spec: BatchSpec, registry: Registry) -> list[Item]:
    """Every item of `spec` (paths in it already absolute), each job validated against `registry`."""
    task_name = spec.job.get("task", "generate")
    if not isinstance(task_name, str):
        raise BatchSpecError("batch spec: job.task: must be a task name")
    try:
        task = registry.task(task_name)
    except JobSpecError as exc:
        raise BatchSpecError(f"batch spec: job.task: {str(exc).removeprefix('invalid job: ')}") from None
    if "image" in spec.job:
        raise BatchSpecError("batch spec: job.image: each item's image comes from inputs, not from the job")
    takes_image = task.inputs.image != "none"
    sources = _sources(spec, takes_image, task.name)
    overrides = _read_overrides(spec.overrides, {key for key, _ in sources}) if spec.overrides else {}
    outputs = _output_names([key for key, _ in sources])
    items = []
    for (key, source), output in zip(sources, outputs, strict=True):
        defaults = {
            "version": 2,
            "model": "toyworld",
            "steps": task.schedule.steps,
            "guidance": task.schedule.guidance,
        }
        data: dict[str, Any] = {
            **defaults,
            **spec.job,
            "task": task.name,
        }  # the task's own steps and CFG, as its command
        if takes_image:
            data["image"] = source
        else:
            data["prompt"] = source
        if task.inputs.negative_and_seed:
            rule = spec.seed
            data["seed"] = rule.base if rule.rule == "fixed" else derived_seed(rule.base, key)
        problem = None
        if spec.masks is not None and spec.masks.pattern is not None:
            mask, problem = _mask_for(spec, key)
            data["options"] = _with_option(data.get("options"), task.name, spec.masks.option, mask)
        data = _apply_override(data, overrides.get(key, {}), task.name)
        items.append(Item(key, _validated(data, registry, key), str(Path(spec.out) / output), problem))
    return items


def plan_fingerprint(spec: BatchSpec, registry: Registry) -> str:
    """What the manifest remembers: the spec and the defaults its items' jobs were filled with.

    Why the defaults too: a studio whose task defaults changed (steps, CFG, a method's options) would make
    other bytes from the same spec file; resuming would then mix two kinds of outputs in one folder.
    """
    from studio.job_spec import JobSpec
    from studio.registry import validate_options

    task = registry.task(str(spec.job.get("task", "generate")))
    template: dict[str, Any] = {n: f.get_default(call_default_factory=True) for n, f in JobSpec.model_fields.items()}
    template |= {"steps": task.schedule.steps, "guidance": task.schedule.guidance, **spec.job}
    raw = (spec.job.get("options") or {}).get(task.name) if isinstance(spec.job.get("options"), dict) else None
    try:
        options = validate_options(task.options, raw, "options").model_dump(mode="json")
    except JobSpecError:  # options completed per item (an override, a mask): the spec's own say it all
        options = raw
    blob = json.dumps(
        {"spec": spec.model_dump(mode="json"), "job": template, "options": options}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _validated(data: dict[str, Any], registry: Registry, key: str) -> dict[str, Any]:
    from studio.jobs import Job

    try:
        return Job.from_dict(data, registry).to_dict()
    except JobSpecError as exc:
        raise BatchSpecError(f"batch spec: job (item {key}): {str(exc).removeprefix('invalid job: ')}") from None


def _sources(spec: BatchSpec, takes_image: bool, task: str) -> list[tuple[str, str]]:
    """(key, image path or prompt) per item, in a stable order."""
    inputs = spec.inputs
    given = [name for name in ("folder", "files", "prompts") if getattr(inputs, name) is not None]
    if len(given) != 1:
        raise BatchSpecError("batch spec: inputs: give exactly one of folder, files or prompts")
    if takes_image and inputs.prompts is not None:
        raise BatchSpecError(
            f"batch spec: inputs.prompts: the {task} task takes an image; give inputs.folder or files"
        )
    if not takes_image and inputs.prompts is None:
        raise BatchSpecError(f"batch spec: inputs: the {task} task takes no input image; give inputs.prompts")
    if inputs.prompts is not None:
        return _prompt_list(Path(inputs.prompts))
    if inputs.folder is not None:
        folder = Path(inputs.folder)
        if not folder.is_dir():
            raise BatchSpecError(f"batch spec: inputs.folder: {folder} is not a folder")
        found = sorted(p for p in folder.glob(inputs.glob) if p.is_file() and not p.name.startswith("."))
        if not found:
            raise BatchSpecError(f"batch spec: inputs.folder: no files match {inputs.glob!r} in {folder}")
        return [(p.relative_to(folder).as_posix(), str(p)) for p in found]
    files = [Path(f) for f in inputs.files or []]
    if not files:
        raise BatchSpecError("batch spec: inputs.files: the list is empty")
    keys = [f.name for f in files]
    if len(set(keys)) != len(keys):
        raise BatchSpecError("batch spec: inputs.files: two inputs share a file name; put them in one folder instead")
    return [(f.name, str(f)) for f in files]


def _prompt_list(path: Path) -> list[tuple[str, str]]:
    """Prompts from a text file (one a line), a CSV with a `prompt` column, or JSONL objects with `prompt`."""
    rows = _rows(path, "inputs.prompts")
    if rows is None:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
        rows = [{"prompt": line} for line in lines if line]
    found = []
    for index, row in enumerate(rows):
        if not isinstance(row.get("prompt"), str):
            raise BatchSpecError(f"batch spec: inputs.prompts: row {index + 1} has no 'prompt'")
        found.append((str(row.get("key") or f"{index:05d}"), row["prompt"]))
    if not found:
        raise BatchSpecError(f"batch spec: inputs.prompts: {path} holds no prompts")
    if len({key for key, _ in found}) != len(found):
        raise BatchSpecError("batch spec: inputs.prompts: two rows share a key")
    return found


def _rows(path: Path, where: str) -> list[dict[str, Any]] | None:
    """The rows of a CSV (by header) or JSONL file; None for any other suffix (plain text)."""
    from studio.safe_json import JsonError, parse_json

    if not path.is_file():
        raise BatchSpecError(f"batch spec: {where}: {path}: no such file")
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return [{k: _cell(v) for k, v in row.items() if k} for row in csv.DictReader(io.StringIO(text))]
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = parse_json(line, f"{path.name} line {number}")
            except JsonError as exc:
                raise BatchSpecError(f"batch spec: {where}: {exc}") from None
            if not isinstance(row, dict):
                raise BatchSpecError(f"batch spec: {where}: {path.name} line {number} is not an object")
            rows.append(row)
        return rows
    return None


def _cell(text: str | None) -> Any:
    """A CSV cell: JSON where it parses (numbers, true), else the text; an empty cell means "not given"."""
    from studio.safe_json import JsonError, parse_json

    if text is None or text == "":
        return None
    try:
        return parse_json(text, "cell")
    except JsonError:
        return text


def _read_overrides(path: str, keys: set[str]) -> dict[str, dict[str, Any]]:
    rows = _rows(Path(path), "overrides")
    if rows is None:
        raise BatchSpecError("batch spec: overrides: give a .csv or .jsonl file")
    found: dict[str, dict[str, Any]] = {}
    for index, row in enumerate(rows):
        key = row.pop("file", None) or row.pop("key", None)
        if not isinstance(key, str) and not isinstance(key, int):
            raise BatchSpecError(f"batch spec: overrides: row {index + 1} names no 'file' (or 'key')")
        key = str(key)
        if key not in keys:
            raise BatchSpecError(f"batch spec: overrides: row {index + 1} names {key!r}, which is not an input")
        found[key] = {k: v for k, v in row.items() if v is not None}
    return found


_JOB_FIELDS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height", "model")


def _apply_override(data: dict[str, Any], row: dict[str, Any], task: str) -> dict[str, Any]:
    """Job fields by name; `options` (an object) merged; any other column is one of the task's options."""
    data = dict(data)
    for name, value in row.items():
        if name in _JOB_FIELDS:
            data[name] = value
        elif name == "options" and isinstance(value, dict):
            for option, option_value in value.items():
                data["options"] = _with_option(data.get("options"), task, option, option_value)
        else:
            data["options"] = _with_option(data.get("options"), task, name, value)
    return data


def _with_option(options: Any, task: str, name: str, value: Any) -> dict[str, Any]:
    merged = dict(options or {})
    merged[task] = {**dict(merged.get(task) or {}), name: value}
    return merged


def _mask_for(spec: BatchSpec, key: str) -> tuple[str, str | None]:
    """The mask path the rule gives for `key`, and the item's problem if there is no such file."""
    assert spec.masks is not None and spec.masks.pattern is not None
    base = Path(spec.inputs.folder) if spec.inputs.folder else Path(spec.out).parent
    name = Path(key)
    path = base / spec.masks.pattern.format(stem=name.with_suffix("").as_posix(), name=name.as_posix())
    problem = None if path.is_file() else f"{key}: missing mask {path} (masks rule {spec.masks.pattern!r})"
    return str(path), problem


def _output_names(keys: list[str]) -> list[str]:
    """`<stem>.png` per key; keys whose stems collide (a.png, a.jpg) keep their full name: `a.jpg.png`."""
    from collections import Counter

    stems = [Path(key).with_suffix("").as_posix() if Path(key).suffix else key for key in keys]
    clashing = {stem for stem, count in Counter(stems).items() if count > 1}
    names = [f"{key if stem in clashing else stem}.png" for key, stem in zip(keys, stems, strict=True)]
    return [name.replace("/", "__") for name in names]
