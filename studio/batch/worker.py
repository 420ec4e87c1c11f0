"""Run one item and settle it in the manifest: the part every engine shares.

Why split in two (`render` makes the PNG bytes, `publish` writes them and marks the item done): the
local and accelerate engines do both in the worker, while under Ray the workers only render and the
driver, which owns the manifest, publishes. Either way an output is written to a temporary name,
fsynced and renamed (`studio.atomic_write`) before its done mark, in one manifest transaction, records
its path and SHA-256. The item owns its output path, so a redo after a kill replaces what a killed run
may have written just before its mark.

Error isolation: anything an item raises (a broken image, a bad mask, a bug in a method) becomes that
item's one-line error; only a cancel (Ctrl-C) and out-of-memory escape, to be handled by the engine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import JobCancelledError, RunError, StudioError

if TYPE_CHECKING:
    from studio.batch.items import Item
    from studio.batch.manifest import Manifest
    from studio.model_cache import ModelCache
    from studio.registry import Registry

MAX_ERROR = 500  # characters of an item's error kept in the manifest


@dataclass(frozen=True)
class Rendered:
    """What running an item gave: the PNG bytes of each image, or the item's one-line error."""

    key: str
    pngs: tuple[bytes, ...] = ()
    error: str | None = None


class OutOfMemory(Exception):
    """An item ran out of device memory: the engine retries it once at half the group size."""


def render(item: Item, models: ModelCache, registry: Registry, root: Path, cancel: Any = None) -> Rendered:
    """Run `item`'s job; its images as PNG bytes with the job embedded (paths relative to `root`)."""
    from studio.images import encode_png
    from studio.jobs import Job
    from studio.runner import run_job
    from studio.task_commands import check_files

    try:
        if item.problem is not None:
            return Rendered(item.key, error=item.problem)
        job = Job.from_dict(item.job, registry)
        check_files(job)
        result = run_job(job, models, cancel=cancel)
        text = png_text(result.job, root)
        return Rendered(item.key, tuple(encode_png(image, text) for image in result.images))
    except (JobCancelledError, KeyboardInterrupt):
        raise
    except RunError as exc:
        if _out_of_memory(exc):
            raise OutOfMemory(str(exc)) from exc
        return Rendered(item.key, error=_one_line(item.key, exc))
    except StudioError as exc:
        return Rendered(item.key, error=_one_line(item.key, exc))
    except MemoryError as exc:
        raise OutOfMemory(f"out of memory: {exc}") from exc
    except Exception as exc:  # an item that raises anything fails alone; the batch goes on
        if _out_of_memory(exc):
            raise OutOfMemory(str(exc)) from exc
        return Rendered(item.key, error=_one_line(item.key, exc, kind=True))


def png_text(job: Any, root: Path) -> dict[str, str]:
    """The PNG text chunks of an output, paths relative to `root`, not to the process's current folder,
    so every engine (a Ray worker runs elsewhere) embeds the same text."""
    from studio.metadata import JOB_KEY, PARAMETERS_KEY, a1111_parameters, portable_job

    safe = portable_job(job, cwd=root)
    return {PARAMETERS_KEY: a1111_parameters(safe), JOB_KEY: safe.to_json(indent=None)}


def publish(item: Item, rendered: Rendered, manifest: Manifest) -> str | None:
    """Write the item's outputs atomically, then mark it done (or failed); returns its error, if any."""
    from studio.atomic_write import publish_bytes

    if rendered.error is not None:
        manifest.mark_failed(item.key, rendered.error)
        return rendered.error
    paths = output_paths(Path(item.output), len(rendered.pngs))
    digest = hashlib.sha256()
    try:
        for path, data in zip(paths, rendered.pngs, strict=True):
            publish_bytes(path, data, overwrite=True)  # the item owns this name: a redo replaces it
            digest.update(data)
    except StudioError as exc:
        error = _one_line(item.key, exc)
        manifest.mark_failed(item.key, error)
        return error
    manifest.mark_done(item.key, ";".join(str(p) for p in paths), digest.hexdigest())
    return None


def output_paths(first: Path, count: int) -> list[Path]:
    """One image: the item's path; several: `<stem>-<i>.png`, as `studio.outputs` names them."""
    if count == 1:
        return [first]
    return [first.with_name(f"{first.stem}-{i}.png") for i in range(count)]


def _out_of_memory(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "OutOfMemoryError" or "out of memory" in str(seen).lower():
            return True
        seen = seen.__cause__
    return False


def _one_line(key: str, exc: BaseException, *, kind: bool = False) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if kind:
        text = f"{type(exc).__name__}: {text}"
    if key not in text:
        text = f"{key}: {text}"
    return text[:MAX_ERROR]
