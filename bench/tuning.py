"""Train time and peak memory of the three tuning recipes, side by side, as ratios to LoRA; fidelity tables from
bench/tuning_fidelity.py's JSON.

Each recipe trains in its own process (peak resident memory is per process; on CUDA the trainer's peak
allocation is read from the report) on the toyworld model and the bundled two-tone star, same steps, same
batch size, so the ratios compare the recipes and not their default schedules.

    nice -n 10 python bench/tuning.py --steps 20 --batch-size 2 [--fidelity /path/fidelity.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

RECIPES = ("lora", "classdiffusion", "residuals")
ROOT = Path(__file__).resolve().parents[1]


def one(recipe: str, steps: int, batch: int, out: Path) -> None:
    import torch

    torch.set_num_threads(1)
    from studio.model_cache import ModelCache
    from studio.training.job import TrainRequest, run_training

    images = ROOT / "assets" / "toyworld" / "concepts" / "twotone_star"
    request = TrainRequest(
        recipe=recipe,
        images=images,
        token="sks",
        cls="star",
        out=out,
        steps=steps,
        batch_size=batch,
        prompt="a {token} {cls}",
    )
    report = run_training(request, ModelCache())
    report["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "recipe",
                    "train_seconds",
                    "parameters",
                    "parameter_fraction",
                    "peak_memory_bytes",
                    "max_rss_bytes",
                )
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--one", choices=RECIPES)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--fidelity", type=Path, help="JSON written by bench/tuning_fidelity.py")
    args = parser.parse_args()
    if args.one:
        one(args.one, args.steps, args.batch_size, args.out)
        return
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in RECIPES:
            command = [
                sys.executable,
                __file__,
                "--one",
                recipe,
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
                "--out",
                str(Path(tmp) / recipe),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows[recipe] = json.loads(done.stdout.strip().splitlines()[-1])
    base = rows["lora"]
    print(f"toyworld, {args.steps} steps, batch {args.batch_size}, CPU fp32 unless CUDA")
    print(f"{'recipe':<16}{'train s':>9}{'x LoRA':>8}{'peak MB':>9}{'x LoRA':>8}{'params':>10}{'% UNet':>8}")
    for recipe, row in rows.items():
        peak = row["peak_memory_bytes"] or row["max_rss_bytes"]
        base_peak = base["peak_memory_bytes"] or base["max_rss_bytes"]
        print(
            f"{recipe:<16}{row['train_seconds']:>9.1f}{row['train_seconds'] / base['train_seconds']:>8.2f}"
            f"{peak / 2**20:>9.0f}{peak / base_peak:>8.2f}{row['parameters']:>10,}"
            f"{100 * row['parameter_fraction']:>8.3f}"
        )
    if args.fidelity and args.fidelity.is_file():
        print("\nfidelity: share of identifier-prompt samples the toyworld detector reads as the concept")
        print(f"{'concept':<18}{'recipe':<16}{'steps':>6}{'tuned':>7}{'untuned':>9}{'bg diff':>9}{'bg LAG':>8}")
        for row in json.loads(args.fidelity.read_text()):
            lag = row.get("background_diff_lag")
            plain = row.get("background_diff_no_lag")
            print(
                f"{row['concept']:<18}{row['recipe']:<16}{row['steps']:>6}{row['rate']:>7.2f}"
                f"{row['untuned_rate']:>9.2f}{'' if plain is None else f'{plain:9.1f}':>9}"
                f"{'' if lag is None else f'{lag:8.1f}':>8}"
            )


if __name__ == "__main__":
    main()
