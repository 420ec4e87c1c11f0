"""One `studio <task>` command per declared task, generated from its declaration.

The command's positional argument and job flags come from the task's `JobInputs` and `Schedule`; each
options field becomes a `--kebab-case` flag (or the `Flag` it declares) with the field's help, default
and range; a `Zipped` list of records becomes parallel repeatable flags; file fields are opened (images)
or loaded (masks, checked against their image's size) before any model loads. Every task command takes
the same repeatable `--control KIND[:key=value,...]` for extra controls.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pipelines.sampler_names import DEFAULT_SAMPLER, sampler_names
from studio.cli_support import Compile, Debug, Device, Memory, NoMetadata, Out, Overwrite, Precision
from studio.cli_support import model_cache, run_and_save, studio_errors
from studio.declarations import Flag, ImagePath, MaskPath, ModelFolder, TaskDeclaration, WeightPath, Zipped
from studio.errors import InputError
from studio.jobs import SCHEMA_VERSION, Job

if TYPE_CHECKING:
    from studio.registry import Registry

CONTROL_HELP = (
    "Add an extra control (repeatable): KIND or KIND:key=value,key=value (values are JSON, else text)."
    " Known kinds: {kinds}."
)


def _param(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def _meta(info: FieldInfo, kind: type) -> Any:
    return next((m for m in info.metadata if isinstance(m, kind)), None)


def _range(info: FieldInfo) -> tuple[Any, Any]:
    low = high = None
    for meta in info.metadata:
        low = next((v for v in (getattr(meta, "ge", None), getattr(meta, "gt", None)) if v is not None), low)
        high = next((v for v in (getattr(meta, "le", None), getattr(meta, "lt", None)) if v is not None), high)
    return low, high


def _help(info: FieldInfo, flag: Flag | None) -> str:
    return _with_range((flag.help if flag and flag.help else None) or info.description or "", info)


def _with_range(text: str, info: FieldInfo) -> str:
    low, high = _range(info)
    return f"{text} ({low} to {high})" if low is not None and high is not None else text


def _flag_names(name: str, flag: Flag | None) -> list[str]:
    names = [flag.name if flag and flag.name else "--" + name.replace("_", "-")]
    return names + ([flag.short] if flag and flag.short else [])


def _scalar_type(info: FieldInfo) -> type:
    if any(_meta(info, marker) for marker in (ImagePath, MaskPath, WeightPath, ModelFolder)):
        return Path
    args = [a for a in getattr(info.annotation, "__args__", (info.annotation,)) if a is not type(None)]
    return args[0]


def _option_params(model: type[BaseModel]) -> list[inspect.Parameter]:
    """Flags for every field of an options model; Zipped records become one repeatable flag per record field."""
    params = []
    for name, info in model.model_fields.items():
        flag, zipped = _meta(info, Flag), _meta(info, Zipped)
        if zipped is not None:
            (record, *_) = info.annotation.__args__
            required = bool(info.metadata and any(getattr(m, "min_length", 0) for m in info.metadata))
            for sub, sub_info in record.model_fields.items():
                kind = list[_scalar_type(sub_info)]
                option = typer.Option(*_flag_names(sub, _meta(sub_info, Flag)), help=_help(sub_info, None))
                if required and sub == zipped.primary:
                    params.append(_param(f"{name}__{sub}", Annotated[kind, option]))
                else:
                    params.append(_param(f"{name}__{sub}", Annotated[kind | None, option], None))
            continue
        kind = _scalar_type(info)
        option = typer.Option(*_flag_names(name, flag), help=_help(info, flag))
        if info.default is PydanticUndefined:
            params.append(_param(name, Annotated[kind, option]))
        elif flag is not None and flag.negate:
            params.append(_param(name, Annotated[bool, option], False))
        else:
            optional = kind | None if info.default is None else kind
            params.append(_param(name, Annotated[optional, option], info.default))
    return params


def _job_params(task: TaskDeclaration, registry: Registry) -> list[inspect.Parameter]:
    inputs, schedule = task.inputs, task.schedule
    params = []
    if inputs.argument == "prompt":
        params.append(_param("prompt", Annotated[str, typer.Argument(help=inputs.argument_help)]))
    else:
        params.append(_param("image", Annotated[Path, typer.Argument(help=inputs.argument_help)]))
        params.append(_param("prompt", Annotated[str, typer.Option("--prompt", "-p", help=inputs.prompt_help)], ""))
    if inputs.image == "optional":
        image = typer.Option("--image", "-i", help=inputs.image_help)
        params.append(_param("image", Annotated[Path | None, image], None))
    model_help = "toyworld, a hub id, a diffusers folder or a .safetensors file."
    params.append(_param("model", Annotated[str, typer.Option("--model", "-m", help=model_help)], "toyworld"))
    if inputs.negative_and_seed:
        negative = typer.Option("--negative", "-n", help="Negative prompt.")
        seed = typer.Option("--seed", "-s", help="Noise seed (default: random, recorded).")
        params += [_param("negative", Annotated[str, negative], ""), _param("seed", Annotated[int | None, seed], None)]
    steps = typer.Option("--steps", help=_with_range(schedule.steps_help, Job.model_fields["steps"]))
    guidance = typer.Option("--guidance", "-g", help=_with_range(schedule.guidance_help, Job.model_fields["guidance"]))
    params += [
        _param("steps", Annotated[int, steps], schedule.steps),
        _param("guidance", Annotated[float, guidance], schedule.guidance),
    ]
    if inputs.size == "square":
        size = typer.Option("--size", help="Working canvas size (default: the model's).")
        params.append(_param("size", Annotated[int | None, size], None))
    else:
        width = typer.Option("--width", "-W", help="Width in pixels (default: the model's).")
        height = typer.Option("--height", "-H", help="Height in pixels (default: the model's).")
        params += [
            _param("width", Annotated[int | None, width], None),
            _param("height", Annotated[int | None, height], None),
        ]
    sampler_help = "Sampler: " + ", ".join(sampler_names()) + " (our or A1111's names)."
    if task.needs_ddim is not TaskDeclaration.needs_ddim:
        sampler_help += " DDIM only where this method replays a DDIM inversion."
    sampler = typer.Option("--sampler", help=sampler_help)
    params.append(_param("sampler", Annotated[str, sampler], DEFAULT_SAMPLER))
    if task.batches:
        size_help = _with_range("Images per UNet call (seed, seed+1, ...).", Job.model_fields["batch_size"])
        count_help = _with_range("UNet calls; seeds continue across them.", Job.model_fields["batch_count"])
        params += [
            _param("batch_size", Annotated[int, typer.Option("--batch-size", help=size_help)], 1),
            _param("batch_count", Annotated[int, typer.Option("--batch-count", help=count_help)], 1),
        ]
    kinds = ", ".join(registry.controls) or "none yet"
    control = typer.Option("--control", help=CONTROL_HELP.format(kinds=kinds))
    params.append(_param("control", Annotated[list[str] | None, control], None))
    return params + _shortcut_params(registry)


def _shortcut_params(registry: Registry) -> list[inspect.Parameter]:
    """Each control's plain flags (its `Shortcut`), repeatable, on every task command."""
    params = []
    for kind, declaration in registry.controls.items():
        shortcut = declaration.shortcut
        if shortcut is None:
            continue
        for name, flag in shortcut.flags.items():
            info = declaration.options.model_fields[name]
            text = shortcut.help.get(name) or info.description or ""
            option = typer.Option(flag, help=text, show_default=False)
            if info.annotation is bool:  # a switch: given once, it holds for every control the primary flags add
                params.append(_param(f"{kind}__{name}", Annotated[bool, option], False))
            else:
                params.append(_param(f"{kind}__{name}", Annotated[list[str] | None, option], None))
    return params


def _shortcut_controls(registry: Registry, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The control specs the shortcut flags describe: one per primary flag given."""
    specs = []
    for kind, declaration in registry.controls.items():
        shortcut = declaration.shortcut
        if shortcut is None:
            continue
        columns = {name: _column(values.get(f"{kind}__{name}")) for name in shortcut.flags}
        count = len(columns[shortcut.primary])
        primary_flag = shortcut.flags[shortcut.primary]
        if not count:
            given = [shortcut.flags[name] for name, column in columns.items() if column]
            if given:
                raise InputError(f"{', '.join(given)} without {primary_flag}: give {primary_flag} as well")
            continue
        for name, column in columns.items():
            if not column and declaration.options.model_fields[name].is_required():
                raise InputError(f"{primary_flag} needs {shortcut.flags[name]} as well")
            if len(column) not in (0, 1, count):
                raise InputError(
                    f"got {len(column)} {shortcut.flags[name]} for {count} {primary_flag}; give one, one each or none"
                )
        for i in range(count):
            options: dict[str, Any] = {}
            for name, column in columns.items():
                if column:
                    options[name] = column[i] if len(column) == count else column[0]
            if shortcut.suffix is not None:
                options.update(_split_suffix(options[shortcut.primary], shortcut.primary, shortcut.suffix))
            specs.append({"kind": kind, "options": options})
    return specs


def _column(value: list[str] | bool | None) -> list[Any]:
    """A shortcut flag's values: a repeatable flag's list, or [True] for a switch that was given."""
    if isinstance(value, bool):
        return [True] if value else []
    return list(value or [])


def _split_suffix(text: str, primary: str, suffix: str) -> dict[str, Any]:
    """`PATH:NUMBER` as {primary: PATH, suffix: NUMBER}; a tail that is not a number stays in the path."""
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            return {primary: head, suffix: float(tail)}
        except ValueError:
            pass
    return {primary: text}


_COMMON = [
    _param("out", Out, None),
    _param("overwrite", Overwrite, False),
    _param("device", Device, "auto"),
    _param("precision", Precision, "auto"),
    _param("memory", Memory, "none"),
    _param("compile", Compile, False),
    _param("no_metadata", NoMetadata, False),
    _param("debug", Debug, False),
]


def task_command(task: TaskDeclaration, registry: Registry) -> Callable[..., None]:
    """The typer command function of `task`: its signature is built from the declaration."""
    params = [*_job_params(task, registry), *_option_params(task.options), *_COMMON]
    names = [p.name for p in params]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise TypeError(f"task {task.name}: option field(s) {', '.join(clashes)} clash with job flags")

    def command(**values: Any) -> None:
        with studio_errors(values["debug"]):
            job = job_from_flags(task, registry, values)
            check_files(job)
            models = model_cache(values["device"], values["precision"], values["memory"], values["compile"])
            run_and_save(job, models, values["out"], not values["no_metadata"], overwrite=values["overwrite"])

    command.__name__ = task.name
    command.__doc__ = task.summary
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def job_from_flags(task: TaskDeclaration, registry: Registry, values: dict[str, Any]) -> Job:
    """The job the flags describe, validated against `registry` (no file is read yet)."""
    fields: dict[str, Any] = {"task": task.name, "model": values["model"], "prompt": values["prompt"]}
    fields |= {"steps": values["steps"], "guidance": values["guidance"], "sampler": values["sampler"]}
    if task.batches:
        fields |= {"batch_size": values["batch_size"], "batch_count": values["batch_count"]}
    if values.get("image") is not None:
        fields["image"] = str(values["image"])
    if task.inputs.negative_and_seed:
        fields |= {"negative_prompt": values["negative"], "seed": values["seed"]}
    if task.inputs.size == "square":
        fields |= {"width": values["size"], "height": values["size"]}
    else:
        fields |= {"width": values["width"], "height": values["height"]}
    options = _options_from_flags(task.options, values)
    if options:
        fields["options"] = {task.name: options}
    fields["controls"] = [parse_control(text) for text in values["control"] or []]
    fields["controls"] += _shortcut_controls(registry, values)
    return Job.from_dict({"version": SCHEMA_VERSION, **fields}, registry)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _options_from_flags(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        flag, zipped = _meta(info, Flag), _meta(info, Zipped)
        if zipped is not None:
            options[name] = _records(name, info, zipped, values)
        elif flag is not None and flag.negate:
            options[name] = not values[name]
        else:
            options[name] = _plain(values[name])
    return options


def _records(name: str, info: FieldInfo, zipped: Zipped, values: dict[str, Any]) -> list[dict[str, Any]]:
    (record, *_) = info.annotation.__args__
    columns = {sub: list(values[f"{name}__{sub}"] or []) for sub in record.model_fields}
    count = len(columns[zipped.primary])
    primary = _flag_names(zipped.primary, _meta(record.model_fields[zipped.primary], Flag))[0]
    for sub, column in columns.items():
        if column and len(column) != count:
            flag = _flag_names(sub, _meta(record.model_fields[sub], Flag))[0]
            raise InputError(f"got {len(column)} {flag} for {count} {primary}; give one per {zipped.item} or none")
    return [
        {sub: _plain(column[i]) if column else record.model_fields[sub].default for sub, column in columns.items()}
        for i in range(count)
    ]


def parse_control(text: str) -> dict[str, Any]:
    """`KIND` or `KIND:key=value,key=value` as a control spec; a value is JSON if it parses, else text."""
    from studio.safe_json import MAX_JSON_DEPTH, JsonError, nesting_depth, parse_json

    kind, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for item in _split_items(rest):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--control {text!r}: write KIND:key=value,key=value")
        if nesting_depth(value) > MAX_JSON_DEPTH:
            raise InputError(f"--control {kind.strip()}: the value of {key.strip()} is nested too deeply")
        try:
            options[key.strip()] = parse_json(value, f"--control {kind.strip()}")
        except JsonError:
            options[key.strip()] = value  # not JSON: the text itself
    return {"kind": kind.strip(), "options": options}


def _split_items(text: str) -> list[str]:
    """Split on commas outside brackets and double quotes, so `sites=[1,2],end=0.5` is two items."""
    items, depth, quoted, current = [], 0, False, ""
    for char in text:
        quoted ^= char == '"'
        depth += not quoted and char in "[{"
        depth -= not quoted and char in "]}"
        if char == "," and depth == 0 and not quoted:
            items.append(current)
            current = ""
        else:
            current += char
    return [item for item in [*items, current] if item.strip()]


def check_files(job: Job) -> None:
    """Open every image and load every mask the job names, so a bad file fails before any model loads."""
    from studio.images import open_image
    from studio.masks import load_mask

    data = job.to_dict()
    if job.image:
        open_image(job.image)
    for where, marker in job.registry.file_fields(job):
        holder: Any = data
        for key in where[:-1]:
            holder = holder[key]
        path = holder[where[-1]]
        if isinstance(marker, ImagePath):
            open_image(path)
            continue
        if isinstance(marker, WeightPath):
            from studio.loras import check_weights_file

            check_weights_file(Path(path).expanduser(), marker.label)
            continue
        if isinstance(marker, ModelFolder):
            if not Path(path).expanduser().is_dir():
                raise InputError(f"{marker.label} folder not found: {path}")
            continue
        owner = None
        if marker.of:  # the record's own field of that name, else the job's
            owner = holder[marker.of] if marker.of in holder else data.get(marker.of)
        size = open_image(owner).size if owner else None
        index = [k for k in where[2:] if isinstance(k, int)]
        label = marker.label.replace(" mask", f" {index[0]} mask") if index else marker.label
        load_mask(path, expected_size=size, name=label)
