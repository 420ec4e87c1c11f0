"""`make demo` (`python -m studio.demo`): a generation and an inversion round trip, offline.

Why: one command on a fresh machine must show the studio working end to end through the same runner
the CLI uses: a model reference resolved and loaded from safetensors, a job run, PNGs written with
their job embedded, and a DDIM inversion whose reconstruction error is measured.

Model choice: the default model (the bundled `toyworld`) when its weights are present; otherwise a tiny
SD1.5-shaped model built from config and saved under the output folder, so the run stays offline and
takes seconds. Switching is `demo_model()` alone. The bundled model's own demo grid, scored by its
detector, is its package's business: `make demo` runs `python -m toyworld.demo` after this.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from studio.errors import StudioError
from studio.jobs import Job
from studio.model_cache import ModelCache
from studio.model_refs import DEFAULT_MODEL, resolve_model_ref
from studio.outputs import save_result
from studio.runner import run_job

DEMO_PROMPT = "a red circle in the center, gray background"
DEMO_SEED = 7


@dataclass(frozen=True)
class DemoResult:
    generated: Path
    reconstructed: Path
    metrics: dict[str, float]


def default_model_available() -> bool:
    try:
        resolve_model_ref(DEFAULT_MODEL)
    except StudioError:
        return False
    return True


def demo_model(out_dir: Path) -> str:
    """The model reference the demo runs: the default model if present, else a tiny SD1.5 under `out_dir`."""
    if default_model_available():
        return DEFAULT_MODEL
    from pipelines.tiny_models import tiny_sd15_pipeline

    folder = out_dir / "tiny-sd15"
    if not (folder / "model_index.json").is_file():
        tiny_sd15_pipeline().save_pretrained(folder, safe_serialization=True)
    return str(folder)


def generate_and_invert(models: ModelCache, model: str, out_dir: Path, *, steps: int = 25) -> DemoResult:
    """Generate one image, then invert it and reconstruct it from x_T; both PNGs carry their jobs."""
    job = Job(task="generate", model=model, prompt=DEMO_PROMPT, seed=DEMO_SEED, steps=steps, guidance=5.0)
    generated = save_result(run_job(job, models), out_dir / "generate.png", overwrite=True)[0]
    inversion = Job(task="invert", model=model, prompt=DEMO_PROMPT, image=str(generated), steps=steps, guidance=1.0)
    result = run_job(inversion, models)
    reconstructed = save_result(result, out_dir / "invert_reconstruction.png", overwrite=True)[0]
    return DemoResult(generated, reconstructed, result.metrics)


def main(out_dir: Path = Path("outputs/demo"), steps: int = 25) -> int:
    """Run the demo and print where the images went and the inversion error. Returns the exit code."""
    from studio.quiet import quiet_diffusers, quiet_environment

    quiet_environment()
    quiet_diffusers()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        models = ModelCache()
        model = demo_model(out_dir)
        print(f"model: {model}")
        result = generate_and_invert(models, model, out_dir, steps=steps)
        print(f"generated: {result.generated}")
        print(f"reconstruction: {result.reconstructed}")
        print(f"inversion round trip error: mse {result.metrics['mse']:.6f}, psnr {result.metrics['psnr_db']:.2f} dB")
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
