"""The `studio` command line: one command per declared task (generate, invert, mutual, visctrl, freecustom,
...), plus inspect, run, schema and doctor.

Why this shape: `inspect` only reads (an image's embedded job, printed as JSON on stdout) and `run`
only executes (a job JSON file, or the job embedded in an image), so `studio inspect out.png > job.json`,
edit, `studio run job.json` is the whole re-run story and there is one way to do it. The task commands
are generated from the task declarations (`studio.task_commands`), so a new task gets its command, flags
and help without an edit here; `build_app(registry)` builds the CLI of any registry and `app` is the
default registry's.

Conventions (those of git, pip and most Unix tools): results on stdout, progress and errors on stderr;
exit 0 ok, 1 a run failed, 2 usage/input error, 130 cancelled. Expected failures (`StudioError`) print
one line and no traceback unless `--debug`. Building the app reads the task declarations and the methods'
torch-free settings modules, so `--help` starts in well under a second; torch and diffusers load when a
command runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from studio.batch.cli import batch_command
from studio.cli_support import (
    Compile,
    Debug,
    Device,
    Memory,
    NoMetadata,
    OneLineErrors,
    Out,
    Overwrite,
    Precision,
    model_cache,
    run_and_save,
    studio_errors,
)
from studio.errors import InputError
from studio.providers import declared_entry_points
from studio.registry import Registry, default_registry
from studio.task_commands import check_files, task_command
from studio.training.cli import train_app

if TYPE_CHECKING:
    from studio.jobs import Job


def build_app(registry: Registry) -> typer.Typer:
    """The `studio` CLI for `registry`: its task commands, then the fixed ones."""
    app = typer.Typer(
        name="studio",
        help="Diffusion Studio: personalize and edit images with diffusion models.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        cls=OneLineErrors,
    )
    app.callback()(_main)
    for task in registry.tasks.values():
        app.command(name=task.name)(task_command(task, registry))

    @app.command()
    def inspect(
        image: Annotated[Path, typer.Argument(help="An image made by the studio or by A1111-compatible tools.")],
        debug: Debug = False,
    ) -> None:
        """Print the job embedded in an image as JSON (our job, or one built from A1111 or ComfyUI metadata).

        Inputs stored relative to the image are printed as found beside it, so `studio run` of the
        printed job, from this folder, finds them."""
        from studio.metadata import read_job, rebased_job
        from studio.model_dirs import missing_model_error

        with studio_errors(debug):
            found = read_job(image, registry)
            for note in found.notes:
                typer.echo(f"note: {note}", err=True)
            if found.missing_model is not None:
                typer.echo(f"note: {missing_model_error(found.missing_model)}", err=True)
            typer.echo(rebased_job(found.job, image.parent).to_json())

    @app.command()
    def run(
        source: Annotated[Path, typer.Argument(help="A job .json file, or an image whose embedded job to re-run.")],
        model: Annotated[str | None, typer.Option("--model", "-m", help="Run with this model instead.")] = None,
        seed: Annotated[int | None, typer.Option("--seed", "-s", help="Use this seed instead.")] = None,
        steps: Annotated[int | None, typer.Option("--steps", help="Use this many steps instead.")] = None,
        guidance: Annotated[float | None, typer.Option("--guidance", "-g", help="Use this CFG scale instead.")] = None,
        width: Annotated[int | None, typer.Option("--width", "-W", help="Use this width instead.")] = None,
        height: Annotated[int | None, typer.Option("--height", "-H", help="Use this height instead.")] = None,
        sampler: Annotated[str | None, typer.Option("--sampler", help="Use this sampler instead.")] = None,
        out: Out = None,
        overwrite: Overwrite = False,
        device: Device = "auto",
        precision: Precision = "auto",
        memory: Memory = "none",
        compile: Compile = False,
        no_metadata: NoMetadata = False,
        debug: Debug = False,
    ) -> None:
        """Run a job spec: `studio inspect out.png > job.json` then `studio run job.json` re-makes out.png.

        An image's job (ours, or one read from A1111 or ComfyUI metadata) runs as it is, or with the
        settings given here instead."""
        overrides = {"model": model, "seed": seed, "steps": steps, "guidance": guidance, "width": width}
        overrides |= {"height": height, "sampler": sampler}
        with studio_errors(debug):
            job = load_job(source, registry, model_given=model is not None)
            changes = {key: value for key, value in overrides.items() if value is not None}
            if changes:
                job = job.replace(**changes)
            check_files(job)
            run_and_save(
                job, model_cache(device, precision, memory, compile), out, not no_metadata, overwrite=overwrite
            )

    @app.command()
    def schema() -> None:
        """Print the JSON schema of a job spec, with every task's and extra control's options."""
        from studio.jobs import json_schema

        typer.echo(json.dumps(json_schema(registry), indent=2))

    app.command()(doctor)
    app.command(name="batch")(batch_command(registry))
    app.add_typer(train_app(), name="train")
    for name, entry in declared_entry_points(COMMAND_GROUP).items():
        app.command(name=name, **PLUGIN_COMMAND)(plugin_command(entry))
    return app


COMMAND_GROUP = "diffusion_studio.commands"  # packages above the studio (the web UI) add commands here
# The plug-in parses its own arguments, --help included.
PLUGIN_COMMAND = {
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True},
    "add_help_option": False,
}


def plugin_command(entry: EntryPoint) -> Callable[..., None]:
    """A command that hands its arguments to the plug-in's `main(argv)`, loaded only when it runs.

    Why: `ui` sits above `studio` and the studio never imports it; the UI declares `studio ui` as an entry
    point instead (as model families declare themselves), so `studio ui` works from an install and a
    checkout while the import graph still points down.
    """

    def command(ctx: typer.Context) -> None:
        entry.load()(list(ctx.args))

    package = entry.value.split(".", 1)[0].split(":", 1)[0]
    command.__doc__ = f"A command of the `{package}` package (its options: `studio {entry.name} --help`)."
    return command


def _main() -> None:
    """Diffusion Studio: personalize and edit images with diffusion models."""
    from studio.quiet import quiet_environment

    quiet_environment()  # the CLI owns its process: our errors and progress are what the user should see


def load_job(source: Path, registry: Registry, *, model_given: bool = False) -> Job:
    """A job from a JSON file, or from the metadata of an image; decided by content, not extension.

    An image's relative input paths are looked for beside the image first (see `rebased_job`); a model
    the metadata names but no model folder holds is an error unless another model is given.
    """
    from studio.jobs import Job
    from studio.metadata import read_job, rebased_job
    from studio.model_dirs import missing_model_error

    if not source.is_file():
        raise InputError(f"{source}: no such file")
    with source.open("rb") as stream:
        head = stream.read(64).removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith((b"{", b"[")):
        return Job.from_json(source.read_bytes(), registry)
    found = read_job(source, registry)
    for note in found.notes:
        typer.echo(f"note: {note}", err=True)
    if found.missing_model is not None and not model_given:
        raise missing_model_error(found.missing_model)
    return rebased_job(found.job, source.parent)


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    debug: Debug = False,
) -> None:
    """Report versions, CUDA, and which attention backend `auto` would use."""
    from studio.doctor import collect_report

    with studio_errors(debug):
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


app = build_app(default_registry())

if __name__ == "__main__":
    app()
