"""Write a job's images as PNGs that carry the job, atomically.

Why: an output is only useful later if it says how it was made (so it can be re-run or shared with
A1111-compatible tools) and is never half-written (so a resumed batch can trust what it finds).
"""

from __future__ import annotations

import time
from pathlib import Path

from studio.errors import InputError
from studio.images import save_png
from studio.metadata import png_text_chunks
from studio.results import JobResult


def default_output_path(result: JobResult, folder: Path = Path("outputs")) -> Path:
    """`outputs/<task>-<YYYYmmdd-HHMMSS>-<seed>.png`: sortable by time, and the seed is in the name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    seed = "" if result.job.seed is None else f"-{result.job.seed}"
    return folder / f"{result.job.task}-{stamp}{seed}.png"


def png_path(path: Path) -> Path:
    """`path` with `.png` added if it has no suffix; any other suffix is refused (outputs are PNG)."""
    if not path.suffix:
        return path.with_suffix(".png")
    if path.suffix.lower() != ".png":
        raise InputError(f"{path.name}: outputs are PNG files; give a path ending in .png")
    return path


def save_result(result: JobResult, path: Path, *, metadata: bool = True) -> list[Path]:
    """Save each image: `path` for one image, `stem-<i>.png` beside it for several. Returns the paths."""
    text = png_text_chunks(result.job) if metadata else None
    path = png_path(path)
    if len(result.images) == 1:
        return [save_png(result.images[0], path, text)]
    return [save_png(image, path.with_name(f"{path.stem}-{i}.png"), text) for i, image in enumerate(result.images)]
