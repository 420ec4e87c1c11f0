"""Runs jobs for browser sessions: the studio's runner in a worker thread, progress as a stream of updates.

Why: the UI must call the same `run_job` as the CLI (one code path, the same bytes), yet a browser needs
progress, previews and a Cancel that works mid-run. So a job runs in a worker thread that reports the
runner's `RunEvent`s through a queue; the caller iterates `RunUpdate`s. Each session owns a
`CancelToken`, and `cancel(session)` sets only that session's, so no user can stop another's job. One
lock per `SessionRuns` (one per device) keeps jobs from sharing the model at once; fairness between
sessions is the web server's queue in front of it. Expected failures end the stream with one line; an
unexpected one is logged with its traceback on the server and shown as one line too.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pipelines.events import CancelToken
from studio.errors import JobCancelledError, StudioError
from studio.results import RunEvent
from studio.runner import run_job
from ui.preview import latent_preview

if TYPE_CHECKING:
    from PIL import Image

    from studio.jobs import Job
    from studio.model_cache import ModelCache

log = logging.getLogger(__name__)

PREVIEW_EVERY = 2  # steps between previews: the preview is cheap, the transfer to the browser is not free


@dataclass(frozen=True)
class RunUpdate:
    """What the UI shows at one moment of a run. `outcome` is set on the last update only."""

    status: str  # one line
    fraction: float = 0.0  # of the job's steps done
    preview: Image.Image | None = None
    outcome: Literal["done", "cancelled", "failed"] | None = None
    outputs: tuple[Path, ...] = ()  # the PNGs written (with the job in their metadata)
    job: Job | None = None  # the resolved job of a finished run


@dataclass
class _Finished:
    outputs: tuple[Path, ...] = ()
    job: Job | None = None
    error: BaseException | None = None


def session_folder(session: str) -> str:
    """A session's folder name: a hash, so a folder listing does not reveal session ids."""
    return hashlib.sha256(session.encode()).hexdigest()[:16]


@dataclass
class SessionRuns:
    """One device's job runner for many browser sessions: cancel tokens per session, one job at a time."""

    models: ModelCache
    output_dir: Path
    preview_every: int = PREVIEW_EVERY
    _tokens: dict[str, CancelToken] = field(default_factory=dict, init=False)
    _tokens_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _device: threading.Lock = field(default_factory=threading.Lock, init=False)

    def output_folder(self, session: str) -> Path:
        return self.output_dir / session_folder(session)

    def cancel(self, session: str) -> bool:
        """Ask this session's running job to stop at its next step boundary; False if it has none."""
        with self._tokens_lock:
            token = self._tokens.get(session)
        if token is None or token.cancelled:
            return False
        token.cancel()
        return True

    def automatic_mask(self, image_path: str, model: str, *, caption: str = "", concept: str | None = None):
        """The mask a job would compute for this image when none is given ([H, W] bool), for the user to
        see and correct before running: the model family's mask provider, else the concept word's attention."""
        import numpy as np

        from pipelines.backbone import Backbone
        from studio.images import open_image
        from studio.tasks.inputs import auto_mask

        image = open_image(image_path)
        with self._device:
            backbone = Backbone.from_pipeline(self.models.get(model))
            mask = auto_mask(image, backbone=backbone, model=model, caption=caption, concept=concept, name="image")
        return np.asarray(mask.cpu().numpy() > 0.5)  # [H, W]

    def run(self, job: Job, session: str) -> Iterator[RunUpdate]:
        """Run `job` for `session`, yielding progress; the last update says how it ended."""
        token = CancelToken()
        with self._tokens_lock:
            self._tokens[session] = token
        events: queue.Queue[RunEvent | _Finished] = queue.Queue()
        worker = threading.Thread(target=self._work, args=(job, session, token, events), daemon=True)
        worker.start()
        try:
            yield from self._follow(events)
        finally:
            with self._tokens_lock:
                if self._tokens.get(session) is token:
                    del self._tokens[session]

    def _work(self, job: Job, session: str, token: CancelToken, events: queue.Queue) -> None:
        from studio.outputs import save_result

        try:
            with self._device:
                result = run_job(job, self.models, on_event=events.put, cancel=token)
            folder = self.output_folder(session)
            folder.mkdir(parents=True, exist_ok=True)
            finished = _Finished(tuple(save_result(result, folder)), result.job)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the browser as one line
            finished = _Finished(error=exc)
        events.put(finished)

    def _follow(self, events: queue.Queue) -> Iterator[RunUpdate]:
        last_preview = -self.preview_every
        while True:
            item = events.get()
            while not isinstance(item, _Finished) and not events.empty():  # fall behind? show the newest
                newer = events.get()
                if isinstance(newer, _Finished):
                    events.put(newer)
                    break
                item = newer
            if isinstance(item, _Finished):
                yield _outcome(item)
                return
            fraction = item.step / item.total if item.total else 0.0
            preview = None
            if item.latents is not None and item.step - last_preview >= self.preview_every:
                preview, last_preview = latent_preview(item.latents), item.step
            yield RunUpdate(_status(item), fraction, preview)


def _status(event: RunEvent) -> str:
    if event.phase == "load":
        return "loading the model"
    eta = f", about {event.eta_s:.0f} s left" if event.eta_s is not None else ""
    return f"{event.phase}: step {event.step} of {event.total}{eta}"


def _outcome(finished: _Finished) -> RunUpdate:
    error = finished.error
    if error is None:
        names = ", ".join(path.name for path in finished.outputs)
        return RunUpdate(f"done: {names}", 1.0, outcome="done", outputs=finished.outputs, job=finished.job)
    if isinstance(error, JobCancelledError):
        return RunUpdate(str(error), outcome="cancelled")
    if isinstance(error, StudioError):
        return RunUpdate(f"error: {one_line(error)}", outcome="failed")
    log.error("the job failed unexpectedly", exc_info=error)
    return RunUpdate(f"error: {type(error).__name__}: {one_line(error)} (details in the server log)", outcome="failed")


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
