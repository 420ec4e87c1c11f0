"""The `studio` command line: generate, invert, mutual, visctrl, freecustom, inspect, run, schema, doctor.

Why this shape: `inspect` only reads (an image's embedded job, printed as JSON on stdout) and `run`
only executes (a job JSON file, or the job embedded in an image), so `studio inspect out.png > job.json`,
edit, `studio run job.json` is the whole re-run story and there is one way to do it.

Conventions (research/ecosystem.md 5.3): results on stdout, progress and errors on stderr; exit 0 ok,
1 a run failed, 2 usage/input error, 130 cancelled. Expected failures (`StudioError`) print one line
and no traceback unless `--debug`. torch and diffusers are imported inside commands, so `studio --help`
starts fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from studio.errors import InputError, StudioError

if TYPE_CHECKING:
    from studio.jobs import Job
    from studio.model_cache import ModelCache
    from studio.runner import JobResult

app = typer.Typer(
    name="studio",
    help="Diffusion Studio: personalize and edit images with diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Model = Annotated[
    str, typer.Option("--model", "-m", help="toyworld, a hub id, a diffusers folder or a .safetensors file.")
]
Seed = Annotated[int | None, typer.Option("--seed", "-s", help="Noise seed (default: random, recorded).")]
Steps = Annotated[int, typer.Option("--steps", min=1, max=1000, help="DDIM steps.")]
Width = Annotated[int | None, typer.Option("--width", "-W", help="Width in pixels (default: the model's).")]
Height = Annotated[int | None, typer.Option("--height", "-H", help="Height in pixels (default: the model's).")]
Out = Annotated[
    Path | None, typer.Option("--out", "-o", help="Output PNG (default: outputs/<task>-<time>-<seed>.png).")
]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")]
Precision = Annotated[str, typer.Option("--precision", help="auto, fp32, fp16 or bf16.")]
Memory = Annotated[str, typer.Option("--memory", help="none, vae-slicing, vae-tiling or cpu-offload.")]
NoMetadata = Annotated[bool, typer.Option("--no-metadata", help="Write no job or parameters into the PNG.")]


@app.callback()
def _main() -> None:
    """Diffusion Studio: personalize and edit images with diffusion models."""
    from studio.quiet import quiet_environment

    quiet_environment()  # the CLI owns its process: our errors and progress are what the user should see


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def _studio_errors(debug: bool) -> Iterator[None]:
    """The one place expected errors become a one-line message and an exit code."""
    try:
        yield
    except StudioError as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        raise _fail(str(exc).replace("\n", " "), exc.exit_code) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None


def _model_cache(device: str, precision: str, memory: str) -> ModelCache:
    from studio.devices import choose_device_policy
    from studio.model_cache import ModelCache
    from studio.quiet import quiet_diffusers

    quiet_diffusers()
    return ModelCache(choose_device_policy(device, precision, memory))  # type: ignore[arg-type]


def _run_and_save(job: Job, models: ModelCache, out: Path | None, metadata: bool) -> JobResult:
    """Run with a rich progress bar on stderr (shown only on a terminal), then write the outputs."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from studio.outputs import png_path, save_result
    from studio.runner import RunEvent, run_job

    out = png_path(out) if out is not None else None  # refuse a bad --out before spending compute
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("loading", total=job.steps)

        def on_event(event: RunEvent) -> None:
            progress.update(task, description=event.phase, completed=event.step, total=event.total)

        result = run_job(job, models, on_event=on_event)
    paths = save_result(result, out, metadata=metadata)
    for path in paths:
        typer.echo(str(path))
    return result


def _echo_metrics(result: JobResult) -> None:
    if "mse" in result.metrics:
        typer.echo(f"reconstruction error: mse {result.metrics['mse']:.6f}, psnr {result.metrics['psnr_db']:.2f} dB")


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="Text prompt.")],
    model: Model = "toyworld",
    negative: Annotated[str, typer.Option("--negative", "-n", help="Negative prompt.")] = "",
    seed: Seed = None,
    steps: Steps = 25,
    guidance: Annotated[float, typer.Option("--guidance", "-g", help="CFG scale.")] = 5.0,
    width: Width = None,
    height: Height = None,
    out: Out = None,
    device: Device = "auto",
    precision: Precision = "auto",
    memory: Memory = "none",
    no_metadata: NoMetadata = False,
    debug: Debug = False,
) -> None:
    """Generate an image from a text prompt."""
    from studio.jobs import Job

    with _studio_errors(debug):
        job = Job(
            task="generate",
            model=model,
            prompt=prompt,
            negative_prompt=negative,
            seed=seed,
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
        )
        _run_and_save(job, _model_cache(device, precision, memory), out, not no_metadata)


@app.command()
def invert(
    image: Annotated[Path, typer.Argument(help="PNG, JPEG or WebP image to invert.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Prompt to invert with (usually empty).")] = "",
    model: Model = "toyworld",
    steps: Steps = 25,
    guidance: Annotated[float, typer.Option("--guidance", "-g", help="CFG scale for inversion.")] = 1.0,
    width: Width = None,
    height: Height = None,
    out: Out = None,
    device: Device = "auto",
    precision: Precision = "auto",
    memory: Memory = "none",
    no_metadata: NoMetadata = False,
    debug: Debug = False,
) -> None:
    """DDIM-invert an image, reconstruct it from the noise, and report the reconstruction error."""
    from studio.images import open_image
    from studio.jobs import Job

    with _studio_errors(debug):
        open_image(image)  # refuse a bad input before any model is loaded
        job = Job(
            task="invert",
            model=model,
            prompt=prompt,
            image=str(image),
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
        )
        _echo_metrics(_run_and_save(job, _model_cache(device, precision, memory), out, not no_metadata))


def _checked_path(path: Path | None) -> str | None:
    """Refuse an unreadable image before any model is loaded; return the path as the job records it."""
    from studio.images import open_image

    if path is None:
        return None
    open_image(path)
    return str(path)


def _checked_mask(mask: Path | None, image: Path | None, name: str) -> str | None:
    """Refuse an empty or mis-sized mask before any model is loaded."""
    from studio.images import open_image
    from studio.masks import load_mask

    if mask is None:
        return None
    size = open_image(image).size if image is not None else None
    load_mask(mask, expected_size=size, name=name)
    return str(mask)


@app.command()
def mutual(
    prompt: Annotated[str, typer.Argument(help="Target prompt: what the edited image should show.")],
    source_prompt: Annotated[str, typer.Option("--source-prompt", help="Prompt of the source.")] = "",
    image: Annotated[
        Path | None, typer.Option("--image", "-i", help="Real source image to edit (else synthesise).")
    ] = None,
    masked: Annotated[bool, typer.Option("--masked", help="Masked variant: foreground and background apart.")] = False,
    source_mask: Annotated[Path | None, typer.Option("--source-mask", help="Source foreground mask.")] = None,
    target_mask: Annotated[Path | None, typer.Option("--target-mask", help="Target foreground mask.")] = None,
    start: Annotated[float, typer.Option("--start", help="First controlled step, fraction of the schedule.")] = 0.08,
    levels: Annotated[int, typer.Option("--levels", help="Decoder resolutions controlled (highest first).")] = 2,
    model: Model = "toyworld",
    negative: Annotated[str, typer.Option("--negative", "-n", help="Negative prompt.")] = "",
    seed: Seed = None,
    steps: Steps = 50,
    guidance: Annotated[float, typer.Option("--guidance", "-g", help="CFG scale.")] = 7.5,
    width: Width = None,
    height: Height = None,
    out: Out = None,
    device: Device = "auto",
    precision: Precision = "auto",
    memory: Memory = "none",
    no_metadata: NoMetadata = False,
    debug: Debug = False,
) -> None:
    """Mutual self-attention (MasaCtrl): the target prompt with the source's appearance."""
    from studio.jobs import Job

    with _studio_errors(debug):
        options = {
            "source_prompt": source_prompt,
            "start": start,
            "levels": levels,
            "masked": masked,
            "source_mask": _checked_mask(source_mask, image, "source mask"),
            "target_mask": _checked_mask(target_mask, None, "target mask"),
        }
        job = Job(
            task="mutual",
            model=model,
            prompt=prompt,
            negative_prompt=negative,
            seed=seed,
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
            image=_checked_path(image),
            options={"mutual": options},
        )
        _run_and_save(job, _model_cache(device, precision, memory), out, not no_metadata)


@app.command()
def visctrl(
    image: Annotated[Path, typer.Argument(help="Target image: the object to re-texture.")],
    reference: Annotated[Path, typer.Option("--reference", "-r", help="Reference image: the appearance to transfer.")],
    target_mask: Annotated[Path | None, typer.Option("--target-mask", help="Mask of the target object.")] = None,
    reference_mask: Annotated[
        Path | None, typer.Option("--reference-mask", help="Mask of the reference object.")
    ] = None,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Target prompt.")] = "",
    reference_prompt: Annotated[str, typer.Option("--reference-prompt", help="Reference prompt.")] = "",
    passes: Annotated[int, typer.Option("--passes", min=1, help="View iterations (each edits the last).")] = 1,
    view: Annotated[list[Path] | None, typer.Option("--view", help="Another view of the target (repeatable).")] = None,
    view_mask: Annotated[list[Path] | None, typer.Option("--view-mask", help="Mask per --view (repeatable).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Feature Gradual Sampling weight of earlier views.")] = 0.5,
    no_crop: Annotated[bool, typer.Option("--no-crop", help="Edit the whole (square) image, not a crop.")] = False,
    size: Annotated[int | None, typer.Option("--size", help="Working canvas size (default: the model's).")] = None,
    model: Model = "toyworld",
    steps: Annotated[int, typer.Option("--steps", min=1, help="DDIM steps of the first pass.")] = 10,
    guidance: Annotated[float, typer.Option("--guidance", "-g", help="CFG of the first pass.")] = 6.0,
    later_steps: Annotated[int, typer.Option("--later-steps", min=1, help="DDIM steps of later passes.")] = 5,
    later_guidance: Annotated[float, typer.Option("--later-guidance", help="CFG of later passes.")] = 4.0,
    out: Out = None,
    device: Device = "auto",
    precision: Precision = "auto",
    memory: Memory = "none",
    no_metadata: NoMetadata = False,
    debug: Debug = False,
) -> None:
    """VisCtrl: transfer a reference object's appearance onto the target object, pasted back in place."""
    from studio.jobs import Job

    with _studio_errors(debug):
        views, masks = list(view or []), list(view_mask or [])
        if masks and len(masks) != len(views):
            raise InputError(f"got {len(masks)} --view-mask for {len(views)} --view; give one per view or none")
        options = {
            "reference": _checked_path(reference),
            "reference_mask": _checked_mask(reference_mask, reference, "reference mask"),
            "target_mask": _checked_mask(target_mask, image, "target mask"),
            "reference_prompt": reference_prompt,
            "passes": passes,
            "later_steps": later_steps,
            "later_guidance": later_guidance,
            "crop": not no_crop,
            "alpha": alpha,
            "views": [
                {"image": _checked_path(v), "mask": _checked_mask(masks[i], v, f"view {i} mask") if masks else None}
                for i, v in enumerate(views)
            ],
        }
        job = Job(
            task="visctrl",
            model=model,
            prompt=prompt,
            steps=steps,
            guidance=guidance,
            width=size,
            height=size,
            image=_checked_path(image),
            options={"visctrl": options},
        )
        _run_and_save(job, _model_cache(device, precision, memory), out, not no_metadata)


@app.command()
def freecustom(
    prompt: Annotated[str, typer.Argument(help="Prompt composing the concepts.")],
    ref: Annotated[list[Path], typer.Option("--ref", help="Reference image (repeatable, one per concept).")],
    caption: Annotated[list[str] | None, typer.Option("--caption", help="Caption per --ref (repeatable).")] = None,
    mask: Annotated[list[Path] | None, typer.Option("--mask", help="Concept mask per --ref (repeatable).")] = None,
    concept: Annotated[
        list[str] | None, typer.Option("--concept", help="Concept word per --ref, for automatic masks.")
    ] = None,
    weight: Annotated[float, typer.Option("--weight", help="Mask weight w added to the concept's logits.")] = 3.0,
    style_fidelity: Annotated[float, typer.Option("--style-fidelity", help="1: uncond half plain (official).")] = 1.0,
    model: Model = "toyworld",
    negative: Annotated[str, typer.Option("--negative", "-n", help="Negative prompt.")] = "",
    seed: Seed = None,
    steps: Steps = 50,
    guidance: Annotated[float, typer.Option("--guidance", "-g", help="CFG scale.")] = 7.5,
    width: Width = None,
    height: Height = None,
    out: Out = None,
    device: Device = "auto",
    precision: Precision = "auto",
    memory: Memory = "none",
    no_metadata: NoMetadata = False,
    debug: Debug = False,
) -> None:
    """FreeCustom: compose reference concepts with multi-reference self-attention."""
    from studio.jobs import Job

    with _studio_errors(debug):
        count = len(ref)
        for name, values in (("--caption", caption), ("--mask", mask), ("--concept", concept)):
            if values and len(values) != count:
                raise InputError(f"got {len(values)} {name} for {count} --ref; give one per reference or none")
        references = [
            {
                "image": _checked_path(path),
                "caption": caption[i] if caption else "",
                "mask": _checked_mask(mask[i], path, f"reference {i} mask") if mask else None,
                "concept": concept[i] if concept else None,
            }
            for i, path in enumerate(ref)
        ]
        options = {"references": references, "mask_weight": weight, "style_fidelity": style_fidelity}
        job = Job(
            task="freecustom",
            model=model,
            prompt=prompt,
            negative_prompt=negative,
            seed=seed,
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
            options={"freecustom": options},
        )
        _run_and_save(job, _model_cache(device, precision, memory), out, not no_metadata)


@app.command()
def inspect(
    image: Annotated[Path, typer.Argument(help="An image made by the studio or by A1111-compatible tools.")],
    debug: Debug = False,
) -> None:
    """Print the job embedded in an image as JSON (our job, or one built from A1111 parameters)."""
    from studio.metadata import read_job

    with _studio_errors(debug):
        found = read_job(image)
        for note in found.notes:
            typer.echo(f"note: {note}", err=True)
        typer.echo(found.job.to_json())


def _load_job(source: Path) -> Job:
    """A job from a JSON file, or from the metadata of an image; decided by content, not extension."""
    from studio.jobs import Job
    from studio.metadata import read_job

    if not source.is_file():
        raise InputError(f"{source}: no such file")
    with source.open("rb") as stream:
        head = stream.read(64).lstrip()
    if head.startswith(b"{"):
        try:
            text = source.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{source.name}: job file is not UTF-8 text") from exc
        return Job.from_json(text)
    found = read_job(source)
    for note in found.notes:
        typer.echo(f"note: {note}", err=True)
    return found.job


@app.command()
def run(
    source: Annotated[Path, typer.Argument(help="A job .json file, or an image whose embedded job to re-run.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Run with this model instead.")] = None,
    out: Out = None,
    device: Device = "auto",
    precision: Precision = "auto",
    memory: Memory = "none",
    no_metadata: NoMetadata = False,
    debug: Debug = False,
) -> None:
    """Run a job spec: `studio inspect out.png > job.json` then `studio run job.json` re-makes out.png."""
    with _studio_errors(debug):
        job = _load_job(source)
        if model is not None:
            job = job.replace(model=model)
        result = _run_and_save(job, _model_cache(device, precision, memory), out, not no_metadata)
        _echo_metrics(result)


@app.command()
def schema() -> None:
    """Print the JSON schema of a job spec."""
    from studio.jobs import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    debug: Debug = False,
) -> None:
    """Report versions, CUDA, and which attention backend `auto` would use."""
    from studio.doctor import collect_report

    with _studio_errors(debug):
        report = collect_report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="studio doctor", show_header=False)
    table.add_row("python", report["python"])
    table.add_row("platform", report["platform"])
    for name, version in report["packages"].items():
        table.add_row(name, version or "[dim]not installed[/dim]")
    cuda = report["cuda"]
    gpu = f"{cuda.get('device')} ({cuda.get('memory_gib')} GiB)" if cuda["available"] else "not available"
    table.add_row("cuda", gpu)
    table.add_row("flex attention", report["flex_attention"])
    attention = report["attention"]
    if "error" in attention:
        table.add_row("attention", attention["error"])
    else:
        for backend, why_not in attention["backends"].items():
            table.add_row(f"backend {backend}", "ok" if why_not is None else f"[dim]{why_not}[/dim]")
        picks = ", ".join(f"{form}: {name}" for form, name in attention["auto"].items())
        table.add_row("auto picks", f"{picks} ({attention['device']}, {attention['dtype']})")
    Console().print(table)


if __name__ == "__main__":
    app()
