"""`studio train lora|classdiffusion|residuals`: tune a model on a folder of concept images.

Why a command group of its own and not a task: a task makes images from a job; training makes a weight file
and a report, resumes from checkpoints and runs for minutes, so it has its own flags and progress bar (loss and
ETA). The file it writes is used with `studio generate --lora FILE[:SCALE]` or `--residuals FILE [--lag]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from studio.cli_support import Debug, Device, Precision, studio_errors

Images = Annotated[
    Path, typer.Option("--images", help="Folder of 3-20 concept images (NAME_mask.png, NAME.txt optional).")
]
Token = Annotated[str, typer.Option("--token", help="The identifier word, e.g. sks.")]
ClassWord = Annotated[str, typer.Option("--class", help="The concept's class word, e.g. star.")]
Steps = Annotated[int | None, typer.Option("--steps", min=1, help="Optimizer steps (default: the recipe's).")]
Model = Annotated[str, typer.Option("--model", "-m", help="Model reference (default: the bundled toyworld).")]
OutDir = Annotated[
    Path | None, typer.Option("--out", "-o", help="Output folder (default: tuned/<token>_<class>_<recipe>).")
]
Seed = Annotated[int, typer.Option("--seed", "-s", help="Seed of the adapter init, batch order and noise.")]
Lr = Annotated[float | None, typer.Option("--lr", min=0.0, help="Learning rate (default: the recipe's).")]
Batch = Annotated[int | None, typer.Option("--batch-size", min=1, help="Images per step (default: the recipe's).")]
Prompt = Annotated[str | None, typer.Option("--prompt", help="Caption template with {token} and {cls}.")]
Every = Annotated[int | None, typer.Option("--checkpoint-every", min=1, help="Checkpoint every N steps.")]


def train_app() -> typer.Typer:
    app = typer.Typer(
        help="Tune a model on a folder of concept images (LoRA, ClassDiffusion, residuals).", no_args_is_help=True
    )

    @app.command()
    def lora(
        images: Images,
        token: Token,
        cls: ClassWord,
        steps: Steps = None,
        model: Model = "toyworld",
        out: OutDir = None,
        seed: Seed = 0,
        lr: Lr = None,
        batch_size: Batch = None,
        prompt: Prompt = None,
        rank: Annotated[int | None, typer.Option("--rank", min=1, help="LoRA rank (default 4).")] = None,
        text_encoder: Annotated[bool, typer.Option("--text-encoder", help="Also tune the text encoder(s).")] = False,
        prior: Annotated[
            bool, typer.Option("--prior", help="Prior preservation with generated class images.")
        ] = False,
        class_images: Annotated[int | None, typer.Option("--class-images", min=1, help="Class images (100).")] = None,
        checkpoint_every: Every = None,
        device: Device = "auto",
        precision: Precision = "auto",
        debug: Debug = False,
    ) -> None:
        """DreamBooth-LoRA: peft LoRA on the UNet's attention projections; a diffusers-format .safetensors."""
        options: dict[str, Any] = {"text_encoder": text_encoder, "prior_preservation": prior}
        if rank is not None:
            options["rank"] = rank
        if class_images is not None:
            options["class_images"] = class_images
        _run("lora", locals(), options)

    @app.command()
    def classdiffusion(
        images: Images,
        token: Token,
        cls: ClassWord,
        steps: Steps = None,
        model: Model = "toyworld",
        out: OutDir = None,
        seed: Seed = 0,
        lr: Lr = None,
        batch_size: Batch = None,
        prompt: Prompt = None,
        spl_weight: Annotated[float | None, typer.Option("--spl-weight", min=0.0, help="SPL weight λ (1).")] = None,
        checkpoint_every: Every = None,
        device: Device = "auto",
        precision: Precision = "auto",
        debug: Debug = False,
    ) -> None:
        """ClassDiffusion: cross-attention K/V and a new token, with the semantic preservation loss."""
        _run("classdiffusion", locals(), {} if spl_weight is None else {"spl_weight": spl_weight})

    @app.command()
    def residuals(
        images: Images,
        token: Token,
        cls: ClassWord,
        steps: Steps = None,
        model: Model = "toyworld",
        out: OutDir = None,
        seed: Seed = 0,
        lr: Lr = None,
        batch_size: Batch = None,
        prompt: Prompt = None,
        checkpoint_every: Every = None,
        device: Device = "auto",
        precision: Precision = "auto",
        debug: Debug = False,
    ) -> None:
        """Personalized residuals: low-rank residuals on every transformer block's proj_out (use --lag to localise)."""
        _run("residuals", locals(), {})

    return app


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
            learning_rate=given["lr"],
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
