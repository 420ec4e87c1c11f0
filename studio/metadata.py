"""Metadata embedded in outputs: an A1111 `parameters` chunk plus our full job JSON, and reading both back.

Why: users move images between tools. A1111's `parameters` text is what every tool (A1111, Forge,
SD.Next, civitai, InvokeAI's importer) reads, so we write it, with the sampler's A1111 name and the
model's AutoV2 `Model hash`; our own `studio_job` chunk holds the exact job so that reading an output back
gives the job that made it. Other tools' metadata (A1111 text in PNG or EXIF, ComfyUI's graph) is read by
`studio.foreign_metadata`, mapping what we can and saying what we dropped.

Privacy: absolute local paths are never embedded. A path under the working
directory is written relative to it, one under the home folder as `~/...`, anything else by its name;
an input inside the output's own folder tree is written relative to the output, so the folder can move
and `studio run OUTPUT` still finds it (and the recorded content hash checks it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipelines.sampler_names import A1111_NAMES
from studio.errors import MetadataError, StudioError
from studio.image_job import JOB_KEY, PARAMETERS_KEY, VERSION, ImageJob
from studio.images import open_for_metadata
from studio.jobs import Job
from studio.registry import Registry

_NEGATIVE_PREFIX = "Negative prompt:"


def portable_path(text: str, *, cwd: Path | None = None, home: Path | None = None, base: Path | None = None) -> str:
    """Rewrite a path so it reveals nothing about this machine: relative to `base` (the output's folder)
    when inside it, else an absolute one relative to the working folder, `~/...`, or its name."""
    expanded = Path(os.path.expanduser(text))
    cwd = (cwd or Path.cwd()).resolve()
    if base is not None:
        resolved = (expanded if expanded.is_absolute() else cwd / expanded).resolve()
        if resolved.is_relative_to(base.resolve()):
            return resolved.relative_to(base.resolve()).as_posix()
    if not expanded.is_absolute():
        return text
    home = (home or Path.home()).resolve()
    resolved = expanded.resolve()
    if resolved.is_relative_to(cwd):
        return resolved.relative_to(cwd).as_posix() or "."
    if resolved.is_relative_to(home):
        return "~/" + resolved.relative_to(home).as_posix()
    return resolved.name


def _map_paths(job: Job, rewrite: Any, *, model: bool = True) -> Job:
    """The job with `rewrite` applied to its model (if `model`), its image, every declared file field, and
    the keys of its recorded input hashes."""
    data = job.to_dict()
    if model:
        data["model"] = rewrite(job.model)
    if job.image:
        data["image"] = rewrite(job.image)
    for where, _ in job.registry.file_fields(job):
        *parents, last = where
        holder = data
        for key in parents:
            holder = holder[key]
        holder[last] = rewrite(holder[last])
    data["inputs"] = {rewrite(k): v for k, v in job.inputs.items()}
    return Job.from_dict(data, job.registry)


def portable_job(job: Job, *, cwd: Path | None = None, home: Path | None = None, base: Path | None = None) -> Job:
    """The job as it may be embedded in a shared image, every path made portable (see `portable_path`);
    `base` is the output's folder. The model is a path only when local: a name or hub id stays."""
    job = _map_paths(job, lambda p: portable_path(p, cwd=cwd, home=home, base=base), model=False)
    return job.replace(model=portable_path(job.model, cwd=cwd, home=home))


def rebased_job(job: Job, folder: Path) -> Job:
    """The job read from an image in `folder`, its relative input paths found beside the image first.

    Why: an input inside the output's folder tree is written relative to the output (`portable_job`), so
    it is found again when the folder moves; other relative paths are the working folder's, as written.
    """

    def rebase(path: str) -> str:
        candidate = folder / path
        return str(candidate) if not Path(path).is_absolute() and candidate.is_file() else path

    return _map_paths(job, rebase, model=False)


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ',:\n"') else value


def local_model_hash(model: str) -> str | None:
    """A1111's AutoV2 hash of a local model (file or diffusers folder), None for a hub id or an unknown name."""
    from studio.model_hash import model_hash
    from studio.model_refs import ModelKind, resolve_model_ref

    try:
        ref = resolve_model_ref(model)
    except StudioError:  # an unknown or refused reference: no file to hash, and nothing to say here
        return None
    if ref.kind is ModelKind.HUB:
        return None
    return model_hash(ref.location)


def a1111_parameters(job: Job, *, model_hash: str | None = None) -> str:
    """A1111's `parameters` text: prompt, `Negative prompt: ...`, then one `Key: value, ...` line."""
    items: list[tuple[str, str]] = [
        ("Steps", str(job.steps)),
        ("Sampler", A1111_NAMES[job.sampler]),
        ("CFG scale", f"{job.guidance:g}"),
    ]
    if job.seed is not None:
        items.append(("Seed", str(job.seed)))
    if job.width is not None and job.height is not None:
        items.append(("Size", f"{job.width}x{job.height}"))
    if model_hash:
        items.append(("Model hash", model_hash))
    items.append(("Model", _quote(job.model)))
    if job.task != "generate":
        items.append(("Studio task", job.task))
    items.append(("Version", VERSION))
    lines = [job.prompt]
    if job.negative_prompt:
        lines.append(f"{_NEGATIVE_PREFIX} {job.negative_prompt}")
    lines.append(", ".join(f"{key}: {value}" for key, value in items))
    return "\n".join(lines)


def png_text_chunks(job: Job, *, folder: Path | None = None) -> dict[str, str]:
    """The text chunks for an output PNG written into `folder`: A1111 `parameters` (with the model's hash
    when the model is a local file or folder) and our `studio_job` JSON, both portable."""
    safe = portable_job(job, base=folder)
    parameters = a1111_parameters(safe, model_hash=local_model_hash(job.model))
    return {PARAMETERS_KEY: parameters, JOB_KEY: safe.to_json(indent=None)}


def read_job(path: str | os.PathLike[str], registry: Registry | None = None) -> ImageJob:
    """Read the job embedded in an image: our `studio_job` chunk if present, else another tool's metadata
    (A1111 text in a PNG chunk or EXIF UserComment, ComfyUI's graph), read by sd-parsers.

    The image is opened by the studio's safe decoder (PNG, JPEG, WebP; bomb limits) and handed to the
    parser already decoded, so no other decoder ever sees the file.
    """
    from studio.foreign_metadata import job_from_image_metadata

    image = open_for_metadata(path)
    name = Path(path).name
    text = getattr(image, "text", None) or {}
    if JOB_KEY in text:
        return ImageJob(Job.from_json(text[JOB_KEY], registry), "studio")
    found = job_from_image_metadata(image, name)
    if found is None:
        raise MetadataError(f"{name}: no studio job or A1111/ComfyUI parameters in this image")
    return found


def job_from_a1111(text: str) -> tuple[Job, list[str]]:
    """A job from A1111 `parameters` text, plus notes on what the studio will do differently."""
    from studio.foreign_metadata import job_from_parameters

    found = job_from_parameters({PARAMETERS_KEY: text})
    return found.job, list(found.notes)
