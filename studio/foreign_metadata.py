"""Jobs from other tools' metadata: A1111's `parameters` (PNG chunk, or EXIF UserComment in JPEG and
WebP) and ComfyUI's `prompt` graph, read by sd-parsers (https://github.com/d3x-at/sd-parsers).

Why a maintained parser: each tool writes its own dialect (A1111's quoting, `Schedule type`, ComfyUI's
node graphs), and the parser's authors follow them. The studio maps what the parser found onto a job,
notes what it cannot carry over, and resolves the model the metadata names against the user's model
folders (`studio.model_dirs`) instead of guessing a hub id.

Untrusted input: the parser only ever gets an image the studio's safe decoder has opened
(`studio.images.open_for_metadata`), and text is length-checked before it is parsed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.sampler_names import DEFAULT_SAMPLER, canonical_sampler
from studio.errors import JobSpecError, MetadataError
from studio.image_job import PARAMETERS_KEY, VERSION, ImageJob
from studio.jobs import Job
from studio.model_dirs import NamedModel, find_model

if TYPE_CHECKING:
    from PIL import Image

MAX_PARAMETERS_CHARS = 1_000_000  # A1111 texts are a few KB; prompts are capped far lower by every UI
_SIZE_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
_UNDERSTOOD = {"Size", "Version", "Studio task", "Schedule type"}  # A1111 items the job maps (others: samplers')


def job_from_image_metadata(image: Image.Image, name: str) -> ImageJob | None:
    """The job another tool's metadata in `image` describes, or None when it has none sd-parsers reads."""
    from sd_parsers import ParserManager
    from sd_parsers.extractors import Eagerness

    _check_lengths(image.info)
    if image.format in ("JPEG", "WEBP"):
        comment = exif_user_comment(image)
        return job_from_parameters({PARAMETERS_KEY: comment}) if comment and comment.strip() else None
    if "prompt" in image.info and "workflow" not in image.info:
        try:
            image.info["workflow"] = json.dumps(comfyui_workflow_of(image.info["prompt"]))
        except (ValueError, TypeError, AttributeError):
            pass  # not a ComfyUI graph: the parsers decide what it is
    try:
        info = ParserManager().parse(image, eagerness=Eagerness.DEFAULT)  # DEFAULT: no pixel steganography
    except Exception as exc:  # the parser's own failure on odd metadata: one line, never a traceback
        raise MetadataError(f"{name}: its metadata cannot be read ({type(exc).__name__})") from exc
    if info is None:
        text = image.info.get(PARAMETERS_KEY)
        # A `parameters` chunk no parser understood: say what is wrong with it rather than "no metadata".
        return job_from_parameters({PARAMETERS_KEY: text}) if isinstance(text, str) and text.strip() else None
    return _job_from_prompt_info(info)


EXIF_IFD, USER_COMMENT = 0x8769, 0x9286


def exif_user_comment(image: Image.Image) -> str | None:
    """The EXIF UserComment of a JPEG or WebP, decoded by its 8-byte charset prefix, as A1111 writes it.

    Why not sd-parsers' extractor: it assumes UTF-16 for every prefix, and it caches the last comment by
    `id(image)`, which a later image can reuse in a long-running process.
    """
    try:
        raw = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    except Exception:  # a malformed EXIF block: no comment to read
        return None
    if isinstance(raw, str) or raw is None:
        return raw
    if len(raw) > 2 * MAX_PARAMETERS_CHARS:
        raise MetadataError(f"EXIF UserComment: {len(raw):,} bytes is over the limit")
    prefix, body = bytes(raw[:8]), bytes(raw[8:])
    if prefix.startswith(b"UNICODE"):
        big_endian = len(body) < 2 or body[0] == 0 or body[1] != 0  # piexif (A1111) writes UTF-16-BE
        return body.decode("utf-16-be" if big_endian else "utf-16-le", errors="replace")
    return body.decode("utf-8", errors="replace")  # "ASCII\0\0\0", or undefined (zeros): UTF-8 in practice


def job_from_parameters(parameters: dict[str, str]) -> ImageJob:
    """The job of A1111 `parameters` text given directly (not in an image)."""
    from sd_parsers.exceptions import ParserError
    from sd_parsers.parsers import AUTOMATIC1111Parser

    _check_lengths(parameters)
    try:
        info = AUTOMATIC1111Parser().parse(parameters)
    except ParserError as exc:
        raise MetadataError(f"A1111 parameters: {exc} (no 'Steps: ..., Sampler: ...' line)") from exc
    except Exception as exc:
        raise MetadataError(f"A1111 parameters cannot be read ({type(exc).__name__})") from exc
    return _job_from_prompt_info(info)


def _check_lengths(info: Any) -> None:
    for key, value in dict(info).items():
        if isinstance(value, (str, bytes)) and len(value) > MAX_PARAMETERS_CHARS:
            raise MetadataError(
                f"metadata {key!r}: {len(value):,} characters is over the {MAX_PARAMETERS_CHARS:,}-character limit"
            )


def _number(value: Any, key: str, kind: type) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"metadata: {key} is not a number ({value!r})") from exc


def _sampler(name: str, parameters: dict[str, Any], notes: list[str]) -> str:
    """Our sampler for a tool's sampler name and schedule (A1111's `Schedule type`, ComfyUI's `scheduler`)."""
    schedule = str(parameters.get("scheduler", "")).strip().lower()
    karras = schedule == "karras" or name.lower().endswith(" karras")
    base = name.removesuffix(" Karras").removesuffix(" karras")
    try:
        ours = canonical_sampler(base)
    except ValueError:
        notes.append(f"sampler {name!r} is not available; the studio samples with {DEFAULT_SAMPLER}")
        return DEFAULT_SAMPLER
    if karras:
        if ours == "dpmpp_2m":
            return "dpmpp_2m_karras"
        notes.append(f"the Karras schedule of {name!r} is not available; the studio uses {ours}'s own")
    elif schedule not in ("", "normal", "automatic", "simple", "sgm_uniform"):
        notes.append(f"schedule {schedule!r} is not available; the studio uses {ours}'s own")
    return ours


def _size(metadata: dict[str, Any]) -> tuple[int, int] | None:
    """(width, height) from A1111's `Size` or ComfyUI's `EmptyLatentImage` node."""
    if "Size" in metadata:
        match = _SIZE_RE.match(str(metadata["Size"]))
        if not match:
            raise MetadataError(f"A1111 parameters: Size is not WxH ({metadata['Size']!r})")
        return int(match[1]), int(match[2])
    for node in metadata.get("EmptyLatentImage") or []:
        if isinstance(node, dict) and "width" in node and "height" in node:
            return _number(node["width"], "width", int), _number(node["height"], "height", int)
    return None


def _model(named: NamedModel, studio_text: bool) -> tuple[str, NamedModel | None]:
    """The job's model for a named model, and the name when no model folder holds it.

    A name that is already a model reference (a provided model such as `toyworld`, an existing path, or
    in our own texts a hub id) stays as it is.
    """
    from studio.model_refs import resolve_model_ref
    from studio.providers import model_provider

    if named.name and (model_provider(named.name) is not None or Path(named.name).expanduser().exists()):
        return named.name, None
    found = find_model(named)
    if found is not None:
        return str(found), None
    if studio_text and named.name:
        try:
            resolve_model_ref(named.name)
            return named.name, None
        except Exception:
            pass
    return named.name or named.hash or "", named


def _job_from_prompt_info(info: Any) -> ImageJob:
    generator = str(getattr(info.generator, "value", info.generator)).lower()
    source = "comfyui" if "comfy" in generator else "a1111"
    if not info.samplers:
        raise MetadataError(f"{source} metadata names no sampler; no job can be made from it")
    sampler = info.samplers[0]
    parameters = dict(sampler.parameters)
    metadata = dict(info.metadata)
    studio_text = str(metadata.get("Version", "")) == VERSION
    notes: list[str] = []
    fields: dict[str, Any] = {
        "prompt": "\n".join(p.value for p in sampler.prompts) or info.full_prompt,
        "negative_prompt": "\n".join(p.value for p in sampler.negative_prompts) or info.full_negative_prompt,
        "sampler": _sampler(str(sampler.name), parameters, notes),
    }
    for key, field, kind in (("steps", "steps", int), ("cfg_scale", "guidance", float), ("seed", "seed", int)):
        if key in parameters:
            fields[field] = _number(parameters[key], key, kind)
    size = _size(metadata)
    if size is not None:
        fields["width"], fields["height"] = size
    named = NamedModel(sampler.model.name, sampler.model.hash) if sampler.model is not None else None
    missing = None
    if named is not None:
        fields["model"], missing = _model(named, studio_text)
        if not fields["model"]:
            del fields["model"]
    if len(info.samplers) > 1:
        notes.append(f"the {source} graph has {len(info.samplers)} samplers; the first one's settings are used")
    task = str(metadata.get("Studio task", "generate"))
    if task != "generate":
        notes.append(f"the A1111 text names task {task!r}; only the generation settings are restored")
    if source == "a1111":
        dropped = sorted(set(metadata) - _UNDERSTOOD)
        if dropped:
            notes.append(f"ignored A1111 settings: {', '.join(dropped)}")
    try:
        job = Job(**fields)
    except JobSpecError as exc:
        raise MetadataError(f"the {source} metadata does not make a valid job: {exc}") from exc
    return ImageJob(job, source, tuple(notes), missing)


def comfyui_workflow_of(prompt: str | dict[str, Any]) -> dict[str, Any]:
    """A minimal ComfyUI `workflow` (its links) rebuilt from a `prompt` graph alone.

    Why: sd-parsers follows a graph's links through the `workflow` chunk that ComfyUI writes beside
    `prompt`; an image that kept only `prompt` (some savers drop the workflow) still names every link in
    its node inputs (`[source_node, output_slot]`), which is all the parser reads.
    """
    graph = json.loads(prompt) if isinstance(prompt, str) else prompt
    links = []
    for target, node in graph.items():
        for value in (node.get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
                links.append([len(links) + 1, value[0], value[1], target, 0, "*"])
    return {"links": links}
