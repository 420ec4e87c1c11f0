"""`studio batch`: run a batch spec, build one from flags, or report a batch's state.

    studio batch SPEC.toml|SPEC.json [--engine local|accelerate|ray] [--retry-failed] [--force-new]
    studio batch TASK --inputs DIR --out OUT [--prompt ...] [--option key=value ...]   (writes OUT/batch.json)
    studio batch status OUT

Exit codes: 0 every item done, 1 some item failed, 2 a bad spec or input, 130 interrupted (resumable).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from studio.cli_support import Debug, Device, Memory, Precision, studio_errors
from studio.errors import InputError, JobCancelledError

if TYPE_CHECKING:
    from studio.batch.run import Summary
    from studio.batch.spec import BatchSpec
    from studio.registry import Registry

Opt = typer.Option


def batch_command(registry: Registry) -> Any:
    """The `batch` command for `registry` (registered by `studio.cli`)."""

    def batch(
        target: Annotated[str, typer.Argument(help="A spec file (.toml/.json), a task name, or 'status'.")],
        folder: Annotated[str | None, typer.Argument(help="With 'status': the batch's output folder.")] = None,
        inputs: Annotated[str | None, Opt("--inputs", help="TASK form: the folder of input images.")] = None,
        glob: Annotated[str, Opt("--glob", help="TASK form: which files of --inputs.")] = "*",
        prompts: Annotated[str | None, Opt("--prompts", help="TASK form: a prompt list (txt/CSV/JSONL).")] = None,
        out: Annotated[str | None, Opt("--out", "-o", help="TASK form: the output folder.")] = None,
        prompt: Annotated[str, Opt("--prompt", "-p", help="TASK form: the prompt of every item.")] = "",
        negative: Annotated[str, Opt("--negative", "-n", help="TASK form: negative prompt.")] = "",
        model: Annotated[str, Opt("--model", "-m", help="TASK form: the model.")] = "toyworld",
        steps: Annotated[int | None, Opt("--steps", help="TASK form: steps (default: the task's).")] = None,
        guidance: Annotated[float | None, Opt("--guidance", "-g", help="TASK form: CFG scale.")] = None,
        seed: Annotated[int, Opt("--seed", "-s", help="TASK form: the base seed.")] = 0,
        seed_rule: Annotated[
            str, Opt("--seed-rule", help="TASK form: 'derived' (from the item) or 'fixed'.")
        ] = "derived",
        option: Annotated[
            list[str] | None, Opt("--option", help="TASK form: a task option, KEY=VALUE (JSON or text).")
        ] = None,
        mask_option: Annotated[
            str | None, Opt("--mask-option", help="TASK form: the option that takes each mask.")
        ] = None,
        mask_pattern: Annotated[
            str, Opt("--mask-pattern", help="TASK form: mask path rule; 'auto' = automatic.")
        ] = "masks/{stem}.png",
        overrides: Annotated[str | None, Opt("--overrides", help="TASK form: per-item CSV/JSONL.")] = None,
        engine: Annotated[str, Opt("--engine", help="local, accelerate or ray.")] = "local",
        workers: Annotated[int, Opt("--workers", help="accelerate processes or Ray workers.")] = 2,
        threads: Annotated[int | None, Opt("--threads", help="torch threads per worker.")] = None,
        ray_address: Annotated[
            str | None, Opt("--ray-address", help="A Ray cluster (default: start one here).")
        ] = None,
        retry_failed: Annotated[bool, Opt("--retry-failed", help="Run failed items again.")] = False,
        force_new: Annotated[
            bool, Opt("--force-new", help="Start over an output folder made from another spec.")
        ] = False,
        device: Device = "auto",
        precision: Precision = "auto",
        memory: Memory = "none",
        debug: Debug = False,
    ) -> None:
        """Run a task over a folder of images or a prompt list, resumably (SQLite manifest beside the outputs)."""
        from studio.batch.engines import ENGINES, RunSettings
        from studio.batch.run import run_batch, status
        from studio.batch.spec import load_spec

        with studio_errors(debug):
            if target == "status":
                if folder is None:
                    raise InputError("studio batch status OUT: give the batch's output folder")
                report(status(Path(folder)), final=False)
                return
            if engine not in ENGINES:
                raise InputError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
            if workers < 1:
                raise InputError("--workers must be at least 1")
            if target in registry.tasks:
                spec = spec_from_flags(target, dict(locals()))
            else:
                spec = load_spec(Path(target))
            settings = RunSettings(engine, workers, threads, device, precision, memory, ray_address)
            try:
                summary = run_batch(spec, registry, settings, retry_failed=retry_failed, force_new=force_new)
            except KeyboardInterrupt:
                raise JobCancelledError("interrupted; the batch is resumable: run the same command again") from None
            report(summary, final=True)
            if summary.counts["failed"] or summary.counts["pending"] or summary.counts["running"]:
                raise typer.Exit(1)

    return batch


def spec_from_flags(task: str, values: dict[str, Any]) -> BatchSpec:
    """The spec the TASK form's flags describe, with paths resolved against the current folder."""
    from studio.batch.spec import parse_spec
    from studio.task_commands import parse_control

    if values["out"] is None:
        raise InputError("studio batch TASK: give --out, the output folder")
    job: dict[str, Any] = {"task": task, "model": values["model"]}
    if values["prompt"]:
        job["prompt"] = values["prompt"]
    if values["negative"]:
        job["negative_prompt"] = values["negative"]
    for name in ("steps", "guidance"):
        if values[name] is not None:
            job[name] = values[name]
    options = {}
    for text in values["option"] or []:
        parsed = parse_control(f"x:{text}")["options"]
        if not parsed:
            raise InputError(f"--option {text!r}: write KEY=VALUE")
        options.update(parsed)
    if options:
        job["options"] = {task: options}
    data: dict[str, Any] = {
        "job": job,
        "out": values["out"],
        "seed": {"rule": values["seed_rule"], "base": values["seed"]},
    }
    data["inputs"] = {k: v for k, v in {"folder": values["inputs"], "prompts": values["prompts"]}.items() if v}
    if values["inputs"]:
        data["inputs"]["glob"] = values["glob"]
    if values["mask_option"]:
        pattern = None if values["mask_pattern"] == "auto" else values["mask_pattern"]
        data["masks"] = {"option": values["mask_option"], "pattern": pattern}
    if values["overrides"]:
        data["overrides"] = values["overrides"]
    return parse_spec(data, "studio batch flags").resolved(Path.cwd())


def report(summary: Summary, *, final: bool) -> None:
    """The counts on stdout, then one line per failed item (its key and error)."""
    counts = summary.counts
    line = ", ".join(f"{counts[s]} {s}" for s in ("done", "failed", "pending", "running"))
    if final:
        rate = f", {summary.ran / summary.seconds:.2f} items/s" if summary.ran and summary.seconds else ""
        line += f" ({summary.ran} run now in {summary.seconds:.1f} s{rate})"
    typer.echo(line)
    for key, error in summary.failures:
        typer.echo(f"failed: {error}")
