"""Toyworld quality table: what the bundled model draws, measured by the detector. Prints figures.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/toyworld_quality.py            # 200 single + 100 two-object
    HF_HUB_OFFLINE=1 .venv/bin/python bench/toyworld_quality.py --single 40 --double 20   # quick look

Fixed prompt sets (grammar, seed 0/1) and fixed per-image seeds; 25 DDIM steps, CFG 5, 64x64.
Goals from the issue: colour >= 90%, position >= 90%, shape >= 80%; pattern is reported.
A benchmark, not a test: it asserts nothing and prints wall time only as information.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOALS = {"color": 0.90, "position": 0.90, "shape": 0.80}


def main() -> None:
    from toyworld import load_toyworld_pipeline, toyworld_path
    from toyworld.quality import evaluate, format_table, prompt_set
    from toyworld.render import PipelineRenderer, clip_t_scorer

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=toyworld_path())
    p.add_argument("--single", type=int, default=200)
    p.add_argument("--double", type=int, default=100)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1000, help="image i uses seed + i")
    p.add_argument("--engine", choices=("diffusers", "studio"), default="diffusers")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default); 1 is much faster on a busy shared 2-core machine")
    p.add_argument("--json", type=Path, help="also write the table as JSON here")
    p.add_argument("--save-grid", type=Path, help="write a PNG grid of the first 32 single-object images")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    pipe = load_toyworld_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    render = PipelineRenderer(pipe, steps=args.steps, guidance_scale=args.cfg, engine=args.engine)
    scorer = clip_t_scorer(args.model)
    start = time.time()
    reports = []
    for name, n, n_obj, pseed in (("single", args.single, 1, 0), ("two-object", args.double, 2, 1)):
        if n:
            prompts = prompt_set(n, n_obj, seed=pseed)
            seeds = [args.seed + i for i in range(n)]
            reports.append(evaluate(render, prompts, seeds, name=name, clip_t_scorer=scorer,
                                    keep_images=bool(args.save_grid)))
    # Reference row: the world drawing its own prompts (the ceiling the detector and toy CLIP-T allow).
    from toyworld.oracle import render_prompt

    oracle_prompts = prompt_set(args.single or 50, 1, seed=0)
    reports.append(evaluate(render_prompt, oracle_prompts, range(len(oracle_prompts)), name="oracle-1obj",
                            clip_t_scorer=scorer))
    print(f"toyworld quality: {args.model}  engine={args.engine} steps={args.steps} cfg={args.cfg} "
          f"seeds={args.seed}+i  ({time.time() - start:.0f}s)")
    print(format_table(reports))
    single = reports[0].accuracy() if reports and reports[0].name == "single" else {}
    for k, goal in GOALS.items():
        if k in single:
            gap = single[k] - goal
            print(f"goal {k:>8} >= {goal:.0%}: {single[k]:.1%} ({'met' if gap >= 0 else f'missed by {-gap:.1%}'})")
    if args.json:
        args.json.write_text(json.dumps([r.row() for r in reports], indent=1))
    if args.save_grid and reports:
        from toyworld.demo import grid

        grid(reports[0].images[:32], cols=8).save(args.save_grid)


if __name__ == "__main__":
    main()
