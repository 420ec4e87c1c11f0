"""Metadata embedded in outputs: an A1111 `parameters` chunk plus our full job JSON.

Why: users move images between tools. A1111's `parameters` text is what every tool (A1111, Forge,
SD.Next, civitai, InvokeAI's importer) reads, so we write it; our own `studio_job` chunk holds the exact
job so that reading an output back gives the job that made it. Reading also accepts A1111's text from
other tools' images, mapping what we can and saying what we dropped.

Privacy (research/ecosystem.md 4.2): absolute local paths are never embedded. A path under the working
directory is written relative to it, one under the home folder as `~/...`, anything else by its name.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.errors import JobSpecError, MetadataError
from studio.images import read_text_chunks
from studio.jobs import Job
from studio.registry import Registry

PARAMETERS_KEY = "parameters"
JOB_KEY = "studio_job"
SAMPLER = "DDIM"

# A key of A1111's settings line (`Steps`, `CFG scale`, `Hires upscaler`, `Lora hashes`, ...).
_KEY_RE = re.compile(r"[A-Za-z][\w \-/()]{0,63}")
MAX_PARAMETERS_CHARS = 1_000_000  # A1111 texts are a few KB; prompts are capped far lower by every UI
_SIZE_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
_NEGATIVE_PREFIX = "Negative prompt:"


def portable_path(text: str, *, cwd: Path | None = None, home: Path | None = None) -> str:
    """Rewrite an absolute path so it reveals nothing about this machine; leave anything else alone."""
    expanded = Path(os.path.expanduser(text))
    if not expanded.is_absolute():
        return text
    cwd = (cwd or Path.cwd()).resolve()
    home = (home or Path.home()).resolve()
    resolved = expanded.resolve()
    if resolved.is_relative_to(cwd):
        return resolved.relative_to(cwd).as_posix() or "."
    if resolved.is_relative_to(home):
        return "~/" + resolved.relative_to(home).as_posix()
    return resolved.name


def portable_job(job: Job, *, cwd: Path | None = None, home: Path | None = None) -> Job:
    """The job as it may be embedded in a shared image: the model, the image and every option field its
    task or control declares a file path (`ImagePath`/`MaskPath`) made portable."""
    data = job.to_dict()
    data["model"] = portable_path(job.model, cwd=cwd, home=home)
    if job.image:
        data["image"] = portable_path(job.image, cwd=cwd, home=home)
    for where, _ in job.registry.file_fields(job):
        *parents, last = where
        holder = data
        for key in parents:
            holder = holder[key]
        holder[last] = portable_path(holder[last], cwd=cwd, home=home)
    data["inputs"] = {portable_path(k, cwd=cwd, home=home): v for k, v in job.inputs.items()}
    return Job.from_dict(data, job.registry)


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ',:\n"') else value


def a1111_parameters(job: Job) -> str:
    """A1111's `parameters` text: prompt, `Negative prompt: ...`, then one `Key: value, ...` line."""
    items: list[tuple[str, str]] = [
        ("Steps", str(job.steps)),
        ("Sampler", SAMPLER),
        ("CFG scale", f"{job.guidance:g}"),
    ]
    if job.seed is not None:
        items.append(("Seed", str(job.seed)))
    if job.width is not None and job.height is not None:
        items.append(("Size", f"{job.width}x{job.height}"))
    items.append(("Model", _quote(job.model)))
    if job.task != "generate":
        items.append(("Studio task", job.task))
    items.append(("Version", "diffusion-studio"))
    lines = [job.prompt]
    if job.negative_prompt:
        lines.append(f"{_NEGATIVE_PREFIX} {job.negative_prompt}")
    lines.append(", ".join(f"{key}: {value}" for key, value in items))
    return "\n".join(lines)


def png_text_chunks(job: Job) -> dict[str, str]:
    """The text chunks for an output PNG: A1111 `parameters` and our `studio_job` JSON, both portable."""
    safe = portable_job(job)
    return {PARAMETERS_KEY: a1111_parameters(safe), JOB_KEY: safe.to_json(indent=None)}


@dataclass(frozen=True)
class A1111Parameters:
    """A1111's `parameters` text split into its parts; `params` keeps every key as written."""

    prompt: str
    negative_prompt: str
    params: dict[str, str] = field(default_factory=dict)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        try:
            return str(json.loads(value))
        except json.JSONDecodeError:
            return value[1:-1]
    return value


def _split_items(line: str) -> list[str]:
    """The line cut at commas outside double quotes (A1111 JSON-quotes values holding commas); linear."""
    items: list[str] = []
    start = 0
    quoted = escaped = False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append(line[start:i])
            start = i + 1
    items.append(line[start:])
    return items


def settings_items(line: str) -> list[tuple[str, str]]:
    """The `Key: value` items of an A1111 settings line, in linear time (a hostile line cannot stall it)."""
    found = []
    for item in _split_items(line):
        key, colon, value = item.partition(":")
        key = key.strip()
        if colon and _KEY_RE.fullmatch(key):
            found.append((key, value.strip()))
    return found


def parse_a1111_parameters(text: str) -> A1111Parameters:
    """Split A1111's text: prompt lines, `Negative prompt:` lines, and the trailing `Key: value` line.

    The last line counts as the settings line only if it holds at least three `Key: value` items, the
    same test A1111 uses, so a prompt that merely contains a colon is not mistaken for settings.
    """
    if len(text) > MAX_PARAMETERS_CHARS:
        raise MetadataError(
            f"A1111 parameters: {len(text):,} characters is over the {MAX_PARAMETERS_CHARS:,}-character limit"
        )
    lines = text.strip().replace("\r\n", "\n").split("\n")
    params: dict[str, str] = {}
    found = settings_items(lines[-1])
    if len(found) >= 3:
        params = {key.strip(): _unquote(value) for key, value in found}
        lines = lines[:-1]
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    for line in lines:
        if negative_lines or line.startswith(_NEGATIVE_PREFIX):
            negative_lines.append(line.removeprefix(_NEGATIVE_PREFIX).lstrip() if not negative_lines else line)
        else:
            prompt_lines.append(line)
    return A1111Parameters("\n".join(prompt_lines).strip(), "\n".join(negative_lines).strip(), params)


_UNDERSTOOD = {"Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Studio task", "Version"}


def _number(params: dict[str, str], key: str, kind: type) -> Any:
    try:
        return kind(params[key])
    except ValueError as exc:
        raise MetadataError(f"A1111 parameters: {key} is not a number ({params[key]!r})") from exc


def job_from_a1111(text: str, *, default_model: str = "toyworld") -> tuple[Job, list[str]]:
    """A job from A1111 `parameters`, plus notes on what the studio will do differently."""
    parsed = parse_a1111_parameters(text)
    params = parsed.params
    fields: dict[str, Any] = {"prompt": parsed.prompt, "negative_prompt": parsed.negative_prompt}
    if "Steps" in params:
        fields["steps"] = _number(params, "Steps", int)
    if "CFG scale" in params:
        fields["guidance"] = _number(params, "CFG scale", float)
    if "Seed" in params:
        fields["seed"] = _number(params, "Seed", int)
    if "Size" in params:
        size = _SIZE_RE.match(params["Size"])
        if not size:
            raise MetadataError(f"A1111 parameters: Size is not WxH ({params['Size']!r})")
        fields["width"], fields["height"] = int(size[1]), int(size[2])
    fields["model"] = params.get("Model") or default_model
    notes: list[str] = []
    task = params.get("Studio task", "generate")
    if task != "generate":
        notes.append(f"the A1111 text names task {task!r}; only the generation settings are restored")
    sampler = params.get("Sampler")
    if sampler and sampler != SAMPLER:
        notes.append(f"sampler {sampler!r} is not available; the studio always samples with {SAMPLER}")
    dropped = sorted(set(params) - _UNDERSTOOD)
    if dropped:
        notes.append(f"ignored A1111 settings: {', '.join(dropped)}")
    try:
        return Job(**fields), notes
    except JobSpecError as exc:
        raise MetadataError(f"A1111 parameters do not make a valid job: {exc}") from exc


@dataclass(frozen=True)
class ImageJob:
    """A job read back from an image, where it came from, and what could not be carried over."""

    job: Job
    source: str  # "studio" | "a1111"
    notes: tuple[str, ...] = ()


def read_job(path: str | os.PathLike[str], registry: Registry | None = None) -> ImageJob:
    """Read the job embedded in an image: our `studio_job` chunk if present, else A1111 `parameters`."""
    chunks = read_text_chunks(path)
    name = Path(path).name
    if JOB_KEY in chunks:
        return ImageJob(Job.from_json(chunks[JOB_KEY], registry), "studio")
    if chunks.get(PARAMETERS_KEY, "").strip():
        job, notes = job_from_a1111(chunks[PARAMETERS_KEY])
        return ImageJob(job, "a1111", tuple(notes))
    raise MetadataError(f"{name}: no studio job or A1111 parameters in this image")
