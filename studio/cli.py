"""The `studio` command line: generate, invert, inspect, run, schema, doctor.

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

    from studio.outputs import default_output_path, png_path, save_result
    from studio.runner import RunEvent, run_job

    out = png_path(out) if out is not None else None  # refuse a bad --out before spending compute
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("loading", total=job.steps)

        def on_event(event: RunEvent) -> None:
            progress.update(task, description=event.phase, completed=event.step, total=event.total)

        result = run_job(job, models, on_event=on_event)
    paths = save_result(result, out or default_output_path(result), metadata=metadata)
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
