"""`studio train lora|classdiffusion|residuals`: tune a model on a folder of concept images.

Why a command group of its own and not a task: a task makes images from a job; training makes a weight file
and a report, resumes from checkpoints and runs for minutes, so it has its own flags and progress bar (loss and
ETA). The file it writes is used with `studio generate --lora FILE[:SCALE]` or `--residuals FILE [--lag]`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from studio.cli_support import Debug, Device, Precision, studio_errors

Images = Annotated[
    Path, typer.Option("--images", help="Folder of 3-20 concept images (NAME_mask.png, NAME.txt optional).")
]
Token = Annotated[str, typer.Option("--token", help="The identifier word, e.g. sks.")]
ClassWord = Annotated[str, typer.Option("--class", help="The concept's class word, e.g. star.")]
Model = Annotated[str, typer.Option("--model", "-m", help="Model reference (default: the bundled toyworld).")]
OutDir = Annotated[
    Path | None, typer.Option("--out", "-o", help="Output folder (default: tuned/<token>_<class>_<recipe>).")
]
Seed = Annotated[int, typer.Option("--seed", "-s", help="Seed of the adapter init, batch order and noise.")]
Prompt = Annotated[str | None, typer.Option("--prompt", help="Caption template with {token} and {cls}.")]


def train_app() -> typer.Typer:
    """One command per recipe declaration: the shared flags, then the recipe's own (`studio.training.recipes`)."""
    from studio.training.recipes import RECIPE_DECLARATIONS

    app = typer.Typer(
        help="Tune a model on a folder of concept images (LoRA, ClassDiffusion, residuals).", no_args_is_help=True
    )
    for declaration in RECIPE_DECLARATIONS:
        app.command(name=declaration.name)(_recipe_command(declaration))
    return app


_SHARED = [
    ("images", Images, inspect.Parameter.empty),
    ("token", Token, inspect.Parameter.empty),
    ("cls", ClassWord, inspect.Parameter.empty),
    ("model", Model, "toyworld"),
    ("out", OutDir, None),
    ("seed", Seed, 0),
    ("prompt", Prompt, None),
    ("device", Device, "auto"),
    ("precision", Precision, "auto"),
    ("debug", Debug, False),
]


def _recipe_command(declaration: Any) -> Any:
    from studio.task_commands import _option_params, _options_from_flags
    from studio.training.recipes import REQUEST_FIELDS

    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter(name, kw, annotation=kind, default=default) for name, kind, default in _SHARED]
    params += _option_params(declaration.flags)

    def command(**values: Any) -> None:
        from studio.registry import validate_options

        with studio_errors(values["debug"]):  # a value out of its range: one line that gives the range
            given = _options_from_flags(declaration.flags, values)
            flags = validate_options(declaration.flags, given, f"train {declaration.name}").model_dump()
        request_values = {name: flags.pop(name) for name in REQUEST_FIELDS}
        _run(declaration.name, values | request_values, flags)

    command.__name__ = declaration.name
    command.__doc__ = declaration.summary
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def _run(recipe: str, given: dict[str, Any], options: dict[str, Any]) -> None:
    from studio.cli_support import model_cache
    from studio.training.job import TrainRequest

    with studio_errors(given["debug"]):
        out = given["out"] or Path("tuned") / f"{given['token']}_{given['cls']}_{recipe}"
        request = TrainRequest(
            recipe=recipe,
            images=given["images"],
            token=given["token"],
            cls=given["cls"],
            out=out,
            model=given["model"],
            steps=given["steps"],
            learning_rate=given["learning_rate"],
            batch_size=given["batch_size"],
            seed=given["seed"],
            prompt=given["prompt"],
            checkpoint_every=given["checkpoint_every"],
            options=options,
        )
        report = _train_with_progress(request, model_cache(given["device"], given["precision"], "none"))
    typer.echo(report["file"])
    typer.echo(
        f"{report['steps']} steps in {report['train_seconds']:.1f} s, final loss {report['loss_curve'][-1]:.4f},"
        f" {report['parameters']:,} parameters tuned; report: {Path(report['file']).parent / 'report.json'}",
        err=True,
    )


def _train_with_progress(request: Any, models: Any) -> dict[str, Any]:
    """Run the job under a rich progress bar on stderr (loss, steps, ETA); a terminal only."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from studio.training.job import check_request, run_training

    check_request(request)
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"train {request.recipe}", total=None, loss="-")

        def on_step(report: Any) -> None:
            progress.update(task, completed=report.step, total=report.total, loss=f"{report.loss:.4f}")

        return run_training(request, models, on_step=on_step, on_note=lambda t: typer.echo(f"note: {t}", err=True))
