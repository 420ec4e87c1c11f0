"""The Gradio app: one tab per declared task, its form derived from the task's options model.

Why this shape: the forms come from the registry (`ui.form_spec`), the form's values become a job the way
the CLI's flags do (`ui.form_job`), and the job runs through the studio's one runner (`ui.runs`), so a
task added to `studio/tasks/` appears here with no UI code of its own, and a UI run makes the bytes
the CLI makes. `StudioUI` holds what the handlers need and exposes them as plain methods, so tests drive
them without a browser; `blocks()` wires them to components.

Safety: models come from the list the server was started with (never a path typed in the browser);
uploaded images are opened with the studio's safe image reader before any model loads (size limit,
decompression-bomb check, PNG/JPEG/WebP only); files named by a dropped job are not fetched from disk;
the app serves files only from its output folder (`allowed_paths`) and gradio's upload cache.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from studio.errors import StudioError
from studio.jobs import Job
from studio.registry import Registry, default_registry
from ui.form_job import MaskWriter, form_from_job, job_from_form
from ui.form_spec import FieldSpec, form_specs, job_specs, option_specs
from ui.runs import RunUpdate, SessionRuns, one_line, session_folder
from ui.upload import StudioImage

TITLE = "Diffusion Studio"
DEVICE_QUEUE = "device"
MASK_RGBA = (
    255,
    48,
    48,
    255,
)  # the brush colour: an automatic mask looks like a painted one  # every run event shares one queue slot: one job on the device at a time


@dataclass(frozen=True)
class Restored:
    """A job read back from an image, as form values of its task's tab."""

    task: str
    values: dict[str, Any]
    message: str


class StudioUI:
    """The handlers of the app, independent of gradio's wiring (tests call them directly)."""

    def __init__(
        self,
        runs: SessionRuns,
        *,
        models: Sequence[str] = ("toyworld",),
        registry: Registry | None = None,
        work_dir: Path | None = None,
    ) -> None:
        if not models:
            raise ValueError("the UI needs at least one model reference")
        self.runs = runs
        self.models = tuple(models)
        self.registry = registry or default_registry()
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="studio-ui-"))

    def mask_writer(self, session: str) -> MaskWriter:
        """Where painted masks of `session` are written: PNG files the job names, under the work folder."""
        from PIL import Image

        from studio.images import save_png

        folder = self.work_dir / session_folder(session)

        def write(mask: np.ndarray) -> str:
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(mask.astype(np.uint8) * 255, "L")
            return str(save_png(image, folder / f"mask-{uuid.uuid4().hex[:12]}.png"))

        return write

    def job_of_form(self, task_name: str, values: Mapping[str, Any], session: str) -> Job:
        """The job a form describes; a model outside the configured list is refused (one line)."""
        from studio.task_commands import check_files

        model = values.get("model") or self.models[0]
        if model not in self.models:
            raise StudioError(f"model {model!r} is not offered by this server; choose one of {', '.join(self.models)}")
        task = self.registry.task(task_name)
        job = job_from_form(task, self.registry, {**values, "model": model}, self.mask_writer(session))
        check_files(job)  # every image and mask opened safely before any model loads
        return job

    def run_form(self, task_name: str, values: Mapping[str, Any], session: str) -> Iterator[RunUpdate]:
        """Build the job from the form and run it for `session`; errors end the stream with one line."""
        try:
            job = self.job_of_form(task_name, values, session)
        except StudioError as exc:
            yield RunUpdate(f"error: {one_line(exc)}", outcome="failed")
            return
        yield from self.runs.run(job, session)

    def cancel(self, session: str) -> str:
        return "cancelling at the next step" if self.runs.cancel(session) else "nothing to cancel"

    def detect_mask(self, image_path: str | None, model: str | None, concept: str | None = None) -> Any:
        """An editor value: the image with its automatic mask as a painted layer the user can correct."""
        if not image_path:
            raise StudioError("upload the image first")
        model = model if model in self.models else self.models[0]
        mask = self.runs.automatic_mask(image_path, model, concept=concept or None)
        layer = np.zeros((*mask.shape, 4), np.uint8)  # (H, W, RGBA)
        layer[mask] = MASK_RGBA
        return {"background": image_path, "layers": [layer], "composite": None}

    def restore(self, path: str | None) -> Restored:
        """The job embedded in a dropped image (ours or A1111's), as its tab's form values."""
        from studio.metadata import read_job

        found = read_job(path, self.registry)
        task = self.registry.task(found.job.task)
        values, missing = form_from_job(task, found.job)
        notes = list(found.notes)
        if values["model"] not in self.models:
            notes.append(f"model {values['model']!r} is not offered here; using {self.models[0]}")
            values["model"] = self.models[0]
        if missing:
            notes.append(f"attach again: {', '.join(missing)}")
        return Restored(task.name, values, "; ".join([f"loaded a {found.source} {task.name} job", *notes]))

    def blocks(self) -> gr.Blocks:
        return _build_blocks(self)


# --- widgets -----------------------------------------------------------------------------------------


def _elem_id(task: str, key: str) -> str:
    return f"{task}-{key}".replace(".", "-").replace("_", "-")


def _widget(task: str, spec: FieldSpec) -> gr.components.Component:
    common = {"label": spec.label, "elem_id": _elem_id(task, spec.key)}
    info = {"info": spec.info} if spec.info else {}
    if spec.kind == "slider":
        return gr.Slider(spec.minimum, spec.maximum, value=spec.default, step=spec.step, **common, **info)
    if spec.kind in ("int", "float"):
        precision = 0 if spec.integer else None
        bounds = {"minimum": spec.minimum, "maximum": spec.maximum}
        return gr.Number(spec.default, precision=precision, **bounds, **common, **info)
    if spec.kind == "checkbox":
        return gr.Checkbox(spec.default, **common, **info)
    if spec.kind == "image":
        return StudioImage(type="filepath", format="png", image_mode=None, sources=["upload", "clipboard"], **common)
    if spec.kind == "mask":
        label = f"{spec.label}: paint the object (nothing painted = automatic mask)"
        return gr.ImageEditor(
            type="numpy",
            image_mode="RGBA",
            format="png",
            layers=False,
            transforms=(),
            sources=[] if spec.mask_of else ["upload"],  # painted over its image, which comes from that field
            brush=gr.Brush(colors=["#" + bytes(MASK_RGBA[:3]).hex()], color_mode="fixed", default_size=8),
            label=label,
            elem_id=common["elem_id"],
        )
    lines = 2 if spec.key == "prompt" else 1
    return gr.Textbox(spec.default, lines=lines, **common, **info)


def _editor_over(path: str | None) -> Any:
    """An editor value showing `path` as the background to paint on (cleared when the image is).

    The upload is opened with the studio's reader first: the editor's own decoding is gradio's, which would
    meet a decompression bomb or a non-image with a bare "Error" at run time; refused here, the editor stays
    empty and the run reports the upload's one-line error.
    """
    from studio.images import open_image

    if not path:
        return None
    try:
        open_image(path)
    except StudioError:
        return None
    return {"background": path, "layers": [], "composite": path}


@dataclass
class _TaskTab:
    name: str
    model: gr.Dropdown
    fields: dict[str, gr.components.Component]
    status: gr.Textbox
    preview: gr.Image
    gallery: gr.Gallery
    files: gr.File
    history: gr.State
    run: gr.Button
    cancel: gr.Button
    send_to: gr.Dropdown
    send: gr.Button
    selected: gr.State


def _task_tab(ui: StudioUI, name: str) -> _TaskTab:
    task = ui.registry.task(name)
    fields: dict[str, gr.components.Component] = {}
    detect: dict[str, gr.Button] = {}  # a mask's "Detect" button: its automatic mask, to correct before running
    with gr.Row():
        with gr.Column(scale=3):
            model = gr.Dropdown(list(ui.models), value=ui.models[0], label="Model", elem_id=_elem_id(name, "model"))
            for spec in job_specs(task):
                fields[spec.key] = _widget(name, spec)
            options = option_specs(task)
            sections = list(dict.fromkeys(spec.section for spec in options))
            for section in sections:
                title = "Options" if section == "options" else section.capitalize()
                first = section == sections[0]
                with gr.Accordion(title, open=first or section == "options"):
                    for spec in (s for s in options if s.section == section):
                        fields[spec.key] = _widget(name, spec)
                        if spec.kind == "mask" and spec.mask_of is not None:
                            detect[spec.key] = gr.Button(
                                f"Detect {spec.label.lower()}", size="sm", elem_id=_elem_id(name, f"{spec.key}.detect")
                            )
            with gr.Row():
                run = gr.Button("Run", variant="primary", elem_id=_elem_id(name, "run"))
                cancel = gr.Button("Cancel", variant="stop", elem_id=_elem_id(name, "cancel"))
        with gr.Column(scale=2):
            status = gr.Textbox(label="Status", interactive=False, elem_id=_elem_id(name, "status"))
            preview = gr.Image(label="Preview", interactive=False, format="png", elem_id=_elem_id(name, "preview"))
            gallery = gr.Gallery(label="Results", format="png", columns=3, elem_id=_elem_id(name, "gallery"))
            files = gr.File(
                label="Download (PNG with its job)",
                file_count="multiple",
                interactive=False,
                elem_id=_elem_id(name, "files"),
            )
            history = gr.State([])
            with gr.Row():
                targets = [_target_label(t, key) for t, key in _image_inputs(ui)]
                send_to = gr.Dropdown(
                    targets,
                    value=targets[0] if targets else None,
                    label="Send the selected result to",
                    elem_id=_elem_id(name, "send-to"),
                    scale=3,
                )
                send = gr.Button("Use as input", size="sm", elem_id=_elem_id(name, "send"), scale=1)
            selected = gr.State(None)  # the gallery's selected result (a path in this session's outputs)
    for spec in [*job_specs(task), *options]:
        if spec.kind == "mask" and spec.mask_of in fields:
            fields[spec.mask_of].change(_editor_over, fields[spec.mask_of], fields[spec.key], queue=False)
            if spec.key in detect:
                _wire_detect(ui, detect[spec.key], spec, fields, model, status)

    def select(history: list[str], event: gr.SelectData) -> str | None:
        shown = history[::-1]  # the gallery shows the newest first
        return shown[event.index] if isinstance(event.index, int) and event.index < len(shown) else None

    gallery.select(select, history, selected, queue=False)
    return _TaskTab(
        name, model, fields, status, preview, gallery, files, history, run, cancel, send_to, send, selected
    )


def _wire_detect(
    ui: StudioUI, button: gr.Button, spec: FieldSpec, fields: dict, model: gr.Dropdown, status: gr.Textbox
) -> None:
    """The "Detect" button puts the automatic mask on the editor as a painted layer, to correct before running."""
    concept_key = spec.key.rsplit(".", 1)[0] + ".concept"  # a record's concept word, where it has one
    inputs = [fields[spec.mask_of], model] + ([fields[concept_key]] if concept_key in fields else [])

    def detect(image_path: str | None, model_name: str, concept: str | None = None):
        try:
            return ui.detect_mask(image_path, model_name, concept), "automatic mask: correct it, then run"
        except StudioError as exc:
            gr.Warning(one_line(exc))
            return gr.skip(), f"error: {one_line(exc)}"

    button.click(detect, inputs, [fields[spec.key], status], concurrency_id=DEVICE_QUEUE, concurrency_limit=1)


def _wire_run(ui: StudioUI, tab: _TaskTab) -> None:
    by_key = {**tab.fields, "model": tab.model}

    def handler(data: dict, request: gr.Request, progress: gr.Progress = gr.Progress()):  # noqa: B008 (gradio reads it)
        values = {key: data[component] for key, component in by_key.items()}
        history = list(data[tab.history])
        for update in ui.run_form(tab.name, values, request.session_hash):
            if update.outcome is None:
                progress(update.fraction, desc=update.status)
                yield {tab.status: update.status, tab.preview: update.preview if update.preview else gr.skip()}
                continue
            if update.outcome == "done":
                history = [*history, *map(str, update.outputs)]
                gr.Info(update.status)
            elif update.outcome == "cancelled":
                gr.Info(update.status)
            else:
                gr.Warning(update.status)
            yield {
                tab.status: update.status,
                tab.preview: gr.skip(),
                tab.gallery: history[::-1],
                tab.files: history[::-1] or None,
                tab.history: history,
            }

    outputs = [tab.status, tab.preview, tab.gallery, tab.files, tab.history]
    tab.run.click(
        handler,
        {*by_key.values(), tab.history},
        outputs,
        concurrency_id=DEVICE_QUEUE,
        concurrency_limit=1,
        api_name=f"run_{tab.name}",
    )

    def cancel(request: gr.Request) -> None:
        # A toast, not the status line: the run stream is the status line's only writer, so its last
        # update (how the job ended) is what stays on screen. Two writers raced: a progress line still in
        # flight could land after a Cancel reply that said the job had ended.
        message = ui.cancel(request.session_hash)
        if message == "nothing to cancel":
            gr.Warning(message)
        else:
            gr.Info(message)

    tab.cancel.click(cancel, None, None, concurrency_limit=None, api_name=f"cancel_{tab.name}")


def _wire_restore(ui: StudioUI, drop: gr.File, note: gr.Textbox, tabs: gr.Tabs, all_tabs: list[_TaskTab]) -> None:
    outputs = [note, tabs] + [c for t in all_tabs for c in (t.model, *t.fields.values())]
    by_name = {t.name: t for t in all_tabs}

    def restore(path: str | None) -> dict:
        if not path:
            return {note: ""}
        try:
            restored = ui.restore(path)
        except StudioError as exc:
            gr.Warning(one_line(exc))
            return {note: f"error: {one_line(exc)}"}
        tab = by_name[restored.task]
        updates: dict[Any, Any] = {note: restored.message, tabs: gr.Tabs(selected=restored.task)}
        updates[tab.model] = restored.values["model"]
        for key, component in tab.fields.items():
            if key in restored.values:
                updates[component] = restored.values[key]
        gr.Info(restored.message)
        return updates

    drop.upload(restore, drop, outputs, queue=False, api_name="load_job")


def _image_inputs(ui: StudioUI) -> list[tuple[str, str]]:
    """(task, field key) of every image input of every task: where a result can be sent."""
    return [
        (name, spec.key)
        for name, task in ui.registry.tasks.items()
        for spec in form_specs(task)
        if spec.kind == "image"
    ]


def _target_label(task: str, key: str) -> str:
    return f"{task}: {key.removeprefix('opt.').replace('.', ' ')}"


def _wire_send(ui: StudioUI, tabs: gr.Tabs, all_tabs: list[_TaskTab]) -> None:
    """ "Use as input": the selected result goes into another tab's image field, and that tab opens."""
    by_name = {t.name: t for t in all_tabs}
    targets = {_target_label(t, key): by_name[t].fields[key] for t, key in _image_inputs(ui)}

    def send(selected: str | None, target: str | None) -> dict:
        if not selected or target not in targets:
            gr.Warning("select a result in the gallery first")
            return {}
        return {tabs: gr.Tabs(selected=target.split(":")[0]), targets[target]: selected}

    for tab in all_tabs:
        tab.send.click(send, [tab.selected, tab.send_to], [tabs, *targets.values()], queue=False)


def _build_blocks(ui: StudioUI) -> gr.Blocks:
    with gr.Blocks(title=TITLE, delete_cache=(3600, 24 * 3600), analytics_enabled=False) as demo:
        gr.Markdown(f"## {TITLE}")
        with gr.Row():
            drop = gr.File(
                label="Drop a PNG made by the studio (or A1111) to load its job",
                file_types=["image"],
                type="filepath",
                elem_id="load-job",
                scale=2,
            )
            note = gr.Textbox(label="Loaded job", interactive=False, elem_id="load-job-note", scale=3)
        tabs_list: list[_TaskTab] = []
        with gr.Tabs() as tabs:
            for name, task in ui.registry.tasks.items():
                with gr.Tab(name.capitalize(), id=name, elem_id=f"tab-{name}"):
                    gr.Markdown(task.summary)
                    tab = _task_tab(ui, name)
                    _wire_run(ui, tab)
                    tabs_list.append(tab)
        _wire_restore(ui, drop, note, tabs, tabs_list)
        _wire_send(ui, tabs, tabs_list)
    return demo


def launch_kwargs(output_dir: Path) -> dict[str, Any]:
    """What every launch passes: no share link; besides gradio's upload cache, only the outputs are served
    (painted masks stay in the work folder, which the browser never needs)."""
    # gradio's run history would keep prompts and images in the browser and offers to sync them to a
    # Hugging Face bucket; the studio's outputs already carry their jobs, so it stays off.
    return {"share": False, "allowed_paths": [str(output_dir)], "show_error": False, "run_history": False}
