"""What every `studio` command shares: one-line errors, the model cache, running and saving, common flags.

Why: the task commands are generated from declarations (`studio.task_commands`) and the fixed commands
live in `studio.cli`; both run jobs and report errors the same way, so that way is written once here.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.jobs import Job
    from studio.model_cache import ModelCache
    from studio.results import JobResult

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Out = Annotated[
    Path | None, typer.Option("--out", "-o", help="Output PNG (default: outputs/<task>-<time>-<seed>.png).")
]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")]
Precision = Annotated[str, typer.Option("--precision", help="auto, fp32, fp16 or bf16.")]
Memory = Annotated[str, typer.Option("--memory", help="none, vae-slicing, vae-tiling or cpu-offload.")]
NoMetadata = Annotated[bool, typer.Option("--no-metadata", help="Write no job or parameters into the PNG.")]


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def studio_errors(debug: bool) -> Iterator[None]:
    """The one place expected errors become a one-line message and an exit code."""
    try:
        yield
    except StudioError as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        raise fail(str(exc).replace("\n", " "), exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def model_cache(device: str, precision: str, memory: str) -> ModelCache:
    from studio.devices import choose_device_policy
    from studio.model_cache import ModelCache
    from studio.quiet import quiet_diffusers

    quiet_diffusers()
    return ModelCache(choose_device_policy(device, precision, memory))  # type: ignore[arg-type]


def run_and_save(job: Job, models: ModelCache, out: Path | None, metadata: bool) -> JobResult:
    """Run with a rich progress bar on stderr (shown only on a terminal), write the outputs, echo metrics."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from studio.outputs import default_output_path, png_path, save_result
    from studio.results import RunEvent
    from studio.runner import run_job

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
    if "mse" in result.metrics:
        typer.echo(f"reconstruction error: mse {result.metrics['mse']:.6f}, psnr {result.metrics['psnr_db']:.2f} dB")
    return result
