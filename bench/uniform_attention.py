"""Uniform Attention Maps (UAM) on toyworld: time against plain DDIM inversion and mutual editing, measured
side by side, then the reconstruction table and the editing table (toyworld/uniform_eval.py).

Run: python bench/uniform_attention.py [--quick] [--model DIR] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def interleaved(functions: dict[str, object], repeats: int) -> dict[str, float]:
    """Median wall time (seconds) of each function over `repeats` rounds that call every function once, in turn,
    after one warm-up round: on a shared machine, load changes hit every variant alike."""
    import torch

    times: dict[str, list[float]] = {name: [] for name in functions}
    for round_ in range(repeats + 1):
        for name, function in functions.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            function()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer cases and steps")
    parser.add_argument("--model", default=None, help="toyworld model folder (default: the bundled one)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-quality", action="store_true", help="timing only")
    parser.add_argument("--no-timing", action="store_true", help="the tables only")
    parser.add_argument("--recon-steps", default="5,10,25", help="DDIM step counts of the reconstruction table")
    parser.add_argument("--seeds", type=int, default=12, help="renders in the reconstruction table")
    parser.add_argument("--edit-guidance", default="2", help="CFG scales of the editing table")
    args = parser.parse_args()
    import torch

    from pipelines.backbone import Backbone
    from pipelines.inversion import invert
    from pipelines.mutual import mutual_edit
    from pipelines.reconstruction import reconstruct
    from pipelines.uniform_edit import uniform_edit
    from toyworld import load_toyworld_pipeline
    from toyworld.uniform_eval import edit_cases, editing, reconstruction, uniform_effect

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    backbone = Backbone.from_pipeline(load_toyworld_pipeline(args.model).to(args.device))
    start = time.time()
    steps, repeats = (10, 2) if args.quick else (25, 3)
    case = edit_cases(1)[0]
    image, prompt = case.image, case.target_prompt

    def round_trip(uniform: bool):
        inverted = invert(backbone, image, "", num_inference_steps=steps, uniform=uniform)
        return reconstruct(backbone, inverted, "", uniform=uniform)

    schedule = {"num_inference_steps": steps, "guidance_scale": 2.0}
    seconds = {} if args.no_timing else interleaved(
        {
            "DDIM invert+reconstruct": lambda: round_trip(False),
            "UAM invert+reconstruct": lambda: round_trip(True),
            "mutual edit (real image)": lambda: mutual_edit(backbone, prompt, source_image=image, **schedule),
            "edit --inversion ddim": lambda: uniform_edit(backbone, image, prompt, inversion="ddim", **schedule),
            "edit (UAM)": lambda: uniform_edit(backbone, image, prompt, **schedule),
        },
        repeats,
    )
    if seconds:
        print(f"time on {args.device}, toyworld 64 px, {steps} DDIM steps, CFG 2 (median of {repeats} interleaved):")
    for i, (name, value) in enumerate(seconds.items()):
        baseline = list(seconds.values())[0 if i < 2 else 2]  # DDIM's round trip; the studio's mutual edit
        print(f"  {name:<26} {value * 1000:8.1f} ms   {value / baseline:5.2f}x")
    if not args.no_quality:
        seeds = 4 if args.quick else args.seeds
        print("reconstruction PSNR against the render (mean; vae = the VAE round trip alone, the ceiling):")
        for s in (10,) if args.quick else [int(x) for x in args.recon_steps.split(",") if x]:
            print("  " + reconstruction(backbone, seeds=seeds, steps=s).line(f"{s} steps"))
        effect = uniform_effect(backbone, seeds=seeds)
        print("relative change of the UNet's prediction under uniform maps (why the reconstruction gain is small):")
        print("  " + effect.line("||eps - eps_uni||/||eps||", unit=""))
        for guidance in [float(x) for x in args.edit_guidance.split(",") if x]:
            kept, done = editing(backbone, cases=3 if args.quick else 6, steps=25, guidance=guidance)
            print(f"editing, CFG {guidance:g}, 25 steps: PSNR outside the edited object; share of edits done:")
            print("  " + kept.line("kept (dB)"))
            print("  " + done.line("edited", unit=""))
    print(f"({time.time() - start:.0f} s) command: python bench/uniform_attention.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
