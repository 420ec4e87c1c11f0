"""Write a job's images as PNGs that carry the job: atomically, under names that are never reused.

Why: an output is only useful later if it says how it was made (so it can be re-run or shared with
A1111-compatible tools), is never half-written (so a resumed batch can trust what it finds), and is
never lost: an existing file is not replaced unless the user asks, a job never writes over its own
input, and default names stay unique when many runs share one folder and one second.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.atomic_write import OutputExistsError, check_name_length, check_writable_target
from studio.errors import OutputError
from studio.images import save_png
from studio.input_hashes import input_paths
from studio.metadata import png_text_chunks

if TYPE_CHECKING:
    from studio.jobs import Job

DEFAULT_FOLDER = Path("outputs")
MAX_NAME_TRIES = 10_000  # a folder with this many same-second names is not a race but a bug


def default_output_name(job: Job) -> str:
    """`<task>-<YYYYmmdd-HHMMSS>-<seed>`: sortable by time, and the seed is in the name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    seed = "" if job.seed is None else f"-{job.seed}"
    return f"{job.task}-{stamp}{seed}"


def default_output_path(result: Any, folder: Path = DEFAULT_FOLDER) -> Path:
    """The first default name for `result` in `folder` (a counter is added on collision when saving)."""
    return folder / f"{default_output_name(result.job)}.png"


def png_path(path: str | os.PathLike[str]) -> Path:
    """Check a user's `--out` before any compute: a folder to write into, or a `.png` file name.

    An existing folder (whatever its name) is where the default-named output goes. A name without a
    suffix gets `.png`; another suffix is refused, as are names that can never be written.
    """
    if str(path).strip() == "":  # a str: Path("") would already have become the current folder
        raise OutputError("--out is empty; give a .png file or a folder")
    path = Path(path)
    check_name_length(path)
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write into {path}: the folder is not writable")
        return path
    if not path.suffix:
        path = path.with_suffix(".png")
    elif path.suffix.lower() != ".png":
        raise OutputError(f"{path.name}: outputs are PNG files; give a path ending in .png")
    check_writable_target(path)
    return path


def _refuse_inputs(targets: list[Path], inputs: list[Path]) -> None:
    """A job never writes over its own input (the files its declaration says it reads)."""
    for target in targets:
        if target.exists() and any(source.exists() and os.path.samefile(target, source) for source in inputs):
            raise OutputError(f"--out {target} is an input of this job; choose another output name")


def _candidates(path: Path | None, job: Job) -> Iterator[tuple[Path, bool]]:
    """(name, is_chosen_by_us) pairs: the user's file once, or default names with a counter."""
    if path is not None and not path.is_dir():
        yield png_path(path), False
        return
    folder = path if path is not None else DEFAULT_FOLDER
    base = default_output_name(job)
    yield folder / f"{base}.png", True
    for counter in range(1, MAX_NAME_TRIES):
        yield folder / f"{base}-{counter}.png", True


def _names(first: Path, count: int, grid: bool) -> list[Path]:
    if count == 1:
        return [first]
    return [first.with_name(f"{first.stem}-{i}.png") for i in range(count)] + (
        [first.with_name(f"{first.stem}-grid.png")] if grid else []
    )


def grid_image(images: list[Any]) -> Any:
    """The images side by side in rows (A1111's grid): ceil(sqrt(n)) columns, in order, on black."""
    from PIL import Image

    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, rows * height))
    for i, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((i % columns) * width, (i // columns) * height))
    return grid


def _texts(result: Any, metadata: bool, folder: Path) -> list[dict[str, str] | None]:
    """Each file's text chunks for outputs in `folder`: a batch's images carry their own jobs, and its
    grid (last) the batch's job."""
    image_jobs = getattr(result, "image_jobs", None)
    if not metadata:
        return [None] * (len(result.images) + (1 if image_jobs else 0))
    if not image_jobs:
        return [png_text_chunks(result.job, folder=folder)] * len(result.images)
    return [png_text_chunks(job, folder=folder) for job in [*image_jobs, result.job]]


def save_result(
    result: Any, path: Path | None = None, *, metadata: bool = True, overwrite: bool = False
) -> list[Path]:
    """Save each image: one file, or `stem-<i>.png` for several (and `stem-grid.png` for a batch's grid).
    Returns the paths written.

    `path` is the user's file, a folder to write default names into, or None for `outputs/`. A name
    the user gave is never replaced unless `overwrite`; a default name that is taken gets a counter.
    """
    batch = bool(getattr(result, "image_jobs", None))
    images = [*result.images, grid_image(result.images)] if batch else list(result.images)
    texts: dict[Path, list[dict[str, str] | None]] = {}
    inputs = [Path(p) for p in input_paths(result.job)]
    for first, ours in _candidates(path, result.job):
        targets = _names(first, len(result.images), batch)
        _refuse_inputs(targets, inputs)
        if not overwrite and any(t.exists() for t in targets):
            if ours:
                continue
            taken = next(t for t in targets if t.exists())
            raise OutputError(f"{taken} already exists; choose another --out, or pass --overwrite")
        try:
            if first.parent not in texts:
                texts[first.parent] = _texts(result, metadata, first.parent)
            return _write_all(images, targets, texts[first.parent], overwrite=overwrite and not ours)
        except OutputExistsError:
            if not ours:
                raise
            continue  # another run took this default name between the check and the write
    raise OutputError(f"no free output name in {first.parent} after {MAX_NAME_TRIES:,} tries")


def _write_all(
    images: list[Any], targets: list[Path], texts: list[dict[str, str] | None], *, overwrite: bool
) -> list[Path]:
    written: list[Path] = []
    try:
        for image, target, text in zip(images, targets, texts, strict=True):
            written.append(save_png(image, target, text, overwrite=overwrite))
    except OutputError:
        if not overwrite:
            for path in written:  # all or nothing: a half-saved set would look like a finished one
                path.unlink(missing_ok=True)
        raise
    return written
