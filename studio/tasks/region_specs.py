"""How a job names its regions (the `regions` and `repaint` tasks): `--region "x,y,w,h:prompt"`,
`--mask-region "MASK:prompt"`, or a JSON layout file; parsed here into the pipeline's `Region`s.

Why text records: the CLI, the UI and batch specs derive their inputs from the options model, and one text per
region is what a user types. A layout file is read when the job runs and its regions are written into the
resolved job as such records, so the recorded job re-makes the image without the file.

Layout file: `{"regions": [{"box": [x, y, w, h], "prompt": "..."}, {"mask": "m.png", "prompt": "..."}]}`
(mask paths relative to the layout file's folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from attention_processors.settings import REGIONAL
from pipelines.region_boxes import MAX_REGIONS, check_box
from pipelines.settings import REGIONAL_RUN
from studio.declarations import Flag, Options, Zipped, setting
from studio.errors import InputError, JobSpecError
from studio.job_spec import MAX_PATH, MAX_TEXT

if TYPE_CHECKING:
    from pipelines.regions import Region

MAX_LAYOUT_BYTES = 1_000_000  # a layout of MAX_REGIONS regions is a few kB; refuse anything absurd unread


class BoxRegion(Options):
    """A box region as the user types it."""

    region: Annotated[str, Flag("--region")] = Field(
        min_length=1,
        max_length=MAX_TEXT,
        description='A box and its prompt, "x,y,w,h:prompt" (fractions of the image; repeatable).',
    )


class MaskRegion(Options):
    """A mask region as the user types it."""

    mask_region: Annotated[str, Flag("--mask-region")] = Field(
        min_length=1,
        max_length=MAX_PATH + MAX_TEXT,
        description='A mask file and its prompt, "MASK:prompt" (white = the region; repeatable).',
    )


class RegionOptions(Options):
    """The options both region tasks declare: the regions (flags or a layout file) and RAG's two weights."""

    regions: Annotated[tuple[BoxRegion, ...], Zipped(primary="region", item="region")] = Field(
        (), max_length=MAX_REGIONS, description="Box regions."
    )
    mask_regions: Annotated[tuple[MaskRegion, ...], Zipped(primary="mask_region", item="mask region")] = Field(
        (), max_length=MAX_REGIONS, description="Mask regions."
    )
    layout: str | None = Field(
        None, max_length=MAX_PATH, description="A JSON layout file of regions (instead of the region flags)."
    )
    delta: float = setting(REGIONAL, "delta")
    binding: float = setting(REGIONAL_RUN, "binding")


def parse_box(text: str, where: str) -> tuple[tuple[float, float, float, float], str]:
    """'x,y,w,h:prompt' -> (box, prompt); a bad box or an empty prompt is a one-line `JobSpecError`."""
    numbers, sep, prompt = text.partition(":")
    if not sep:
        raise JobSpecError(f'invalid job: {where} {text!r}: write "x,y,w,h:prompt"')
    try:
        box = tuple(float(v) for v in numbers.split(","))
        box = check_box(box, where)
    except ValueError as exc:
        message = str(exc) if str(exc).startswith(where) else f"{where} {numbers!r}: x,y,w,h must be four numbers"
        raise JobSpecError(f"invalid job: {message}") from None
    return box, _prompt(prompt, where)


def parse_mask(text: str, where: str) -> tuple[str, str]:
    """'MASK:prompt' -> (mask path, prompt); the path may not contain ':' (use a layout file then)."""
    path, sep, prompt = text.partition(":")
    if not sep or not path.strip():
        raise JobSpecError(f'invalid job: {where} {text!r}: write "MASK:prompt"')
    return path.strip(), _prompt(prompt, where)


def _prompt(text: str, where: str) -> str:
    if not text.strip():
        raise JobSpecError(f"invalid job: {where}: the region prompt is empty; say what the region shows")
    return text.strip()


def check_regions(options: Any, *, exactly_one: bool = False) -> None:
    """Refuse what the job's own text shows to be wrong, before any file is read or model loaded."""
    for i, spec in enumerate(options.regions):
        parse_box(spec.region, f"region {i}")
    for i, spec in enumerate(options.mask_regions):
        parse_mask(spec.mask_region, f"mask region {i}")
    count = len(options.regions) + len(options.mask_regions)
    if options.layout is not None and count:
        raise JobSpecError("invalid job: give regions by --layout or by --region/--mask-region, not both")
    if options.layout is None and count == 0:
        raise JobSpecError("invalid job: give at least one --region, --mask-region or --layout")
    if exactly_one and count > 1:
        raise JobSpecError(f"invalid job: repaint changes one region; got {count}")
    if count > MAX_REGIONS:
        raise JobSpecError(f"invalid job: {count} regions; at most {MAX_REGIONS}")


def resolved_options(options: Any) -> Any:
    """The options with a layout file's regions written in as region records (the file itself dropped)."""
    if options.layout is None:
        return options
    path = Path(options.layout).expanduser()
    boxes, masks = [], []
    for kind, value, prompt in read_layout(path):
        if kind == "box":
            boxes.append(BoxRegion(region=",".join(repr(float(v)) for v in value) + ":" + prompt))
        else:
            masks.append(MaskRegion(mask_region=f"{value}:{prompt}"))
    return options.model_copy(update={"regions": tuple(boxes), "mask_regions": tuple(masks), "layout": None})


def read_layout(path: Path) -> list[tuple[str, Any, str]]:
    """(kind, box or mask path, prompt) per region of a layout file, or a one-line `InputError`."""
    if not path.is_file():
        raise InputError(f"layout file not found: {path}")
    if path.stat().st_size > MAX_LAYOUT_BYTES:
        raise InputError(f"layout {path.name}: larger than {MAX_LAYOUT_BYTES} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"layout {path.name}: not JSON ({exc})") from None
    entries = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(
            f'layout {path.name}: expected {{"regions": [{{"box": [x, y, w, h], "prompt": "..."}}, ...]}}'
        )
    if len(entries) > MAX_REGIONS:
        raise InputError(f"layout {path.name}: {len(entries)} regions; at most {MAX_REGIONS}")
    found = []
    for i, entry in enumerate(entries):
        where = f"layout {path.name}: region {i}"
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("prompt"), str)
            or set(entry) - {"box", "mask", "prompt"}
        ):
            raise InputError(f'{where}: expected {{"box": [x, y, w, h], "prompt": "..."}} or {{"mask": PATH, ...}}')
        prompt = entry["prompt"].strip()
        if not prompt:
            raise InputError(f"{where}: the region prompt is empty; say what the region shows")
        if ("box" in entry) == ("mask" in entry):
            raise InputError(f"{where}: give a box or a mask, exactly one")
        if "box" in entry:
            box = entry["box"]
            if not isinstance(box, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in box
            ):
                raise InputError(f"{where}: box must be four numbers [x, y, w, h]")
            try:
                found.append(("box", check_box(box, where), prompt))
            except ValueError as exc:
                raise InputError(str(exc)) from None
        else:
            if not isinstance(entry["mask"], str) or ":" in entry["mask"]:
                raise InputError(f"{where}: mask must be a file path without ':'")
            found.append(("mask", str(path.parent / entry["mask"]), prompt))
    return found


def regions_of(options: Any, image_size: tuple[int, int] | None = None) -> list[Region]:
    """The pipeline's regions for resolved options; masks are loaded (checked against `image_size` (W, H))."""
    from pipelines.regions import Region
    from studio.masks import load_mask

    regions: list[Region] = []
    for i, spec in enumerate(options.regions):
        box, prompt = parse_box(spec.region, f"region {i}")
        regions.append(Region(prompt, box=box))
    for i, spec in enumerate(options.mask_regions):
        path, prompt = parse_mask(spec.mask_region, f"mask region {i}")
        mask = load_mask(path, expected_size=image_size, name=f"region mask {i}")
        regions.append(Region(prompt, mask=mask))
    return regions
