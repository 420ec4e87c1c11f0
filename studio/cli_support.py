"""What every `studio` command shares: one-line errors, the model cache, running and saving, common flags.

Why: the task commands are generated from declarations (`studio.task_commands`) and the fixed commands
live in `studio.cli`; both run jobs and report errors the same way, so that way is written once here.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.16 vendors click as typer._click; its exceptions are not click's
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions

from studio.atomic_write import OutputExistsError
from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.jobs import Job
    from studio.model_cache import ModelCache
    from studio.results import JobResult

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
# A str, not a Path: Path("") is the current folder, and an empty --out must be refused, not obeyed.
Out = Annotated[
    str | None,
    typer.Option(
        "--out", "-o", help="Output PNG, or a folder for the default name (default: outputs/<task>-<time>-<seed>.png)."
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file (never done otherwise).")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")]
Precision = Annotated[str, typer.Option("--precision", help="auto, fp32, fp16 or bf16.")]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile", help="torch.compile the UNet (slow first step, then faster on GPU; the compile time is reported)."
    ),
]
Memory = Annotated[str, typer.Option("--memory", help="none, vae-slicing, vae-tiling or cpu-offload.")]
NoMetadata = Annotated[bool, typer.Option("--no-metadata", help="Write no job or parameters into the PNG.")]


class OneLineErrors(TyperGroup):
    """Usage errors (a bad flag value, a missing argument) as one `error:` line, like every other error.

    Why: click draws a usage box of five lines or more; scripts and batch logs want one line, and the
    studio's own errors are already one line. `--help` still shows the full usage.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_exceptions.NoArgsIsHelpError as exc:
            exc.show()  # `studio` alone prints its help
            sys.exit(exc.exit_code)
        except click_exceptions.ClickException as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if getattr(exc, "ctx", None) is not None else ""
            message = exc.format_message().replace("\n", " ")
            typer.echo(f"error: {message}{where}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("error: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


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


def model_cache(device: str, precision: str, memory: str, compile: bool = False) -> ModelCache:
    from studio.devices import choose_device_policy
    from studio.model_cache import ModelCache
    from studio.quiet import quiet_diffusers

    quiet_diffusers()
    return ModelCache(choose_device_policy(device, precision, memory, compile=compile))  # type: ignore[arg-type]


def run_and_save(
    job: Job, models: ModelCache, out: str | None, metadata: bool, *, overwrite: bool = False
) -> JobResult:
    """Run with a rich progress bar on stderr (shown only on a terminal), write the outputs, echo metrics."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from studio.outputs import png_path, save_result
    from studio.results import RunEvent
    from studio.runner import run_job

    target = png_path(out) if out is not None else None  # refuse a bad --out before spending compute
    if target is not None and target.is_file() and not overwrite:
        raise OutputExistsError(f"{target} already exists; choose another --out, or pass --overwrite")
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("loading", total=job.steps)

        def on_event(event: RunEvent) -> None:
            progress.update(task, description=event.phase, completed=event.step, total=event.total)

        result = run_job(job, models, on_event=on_event)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    paths = save_result(result, target, metadata=metadata, overwrite=overwrite)
    for path in paths:
        typer.echo(str(path))
    if "mse" in result.metrics:
        typer.echo(f"reconstruction error: mse {result.metrics['mse']:.6f}, psnr {result.metrics['psnr_db']:.2f} dB")
    return result
