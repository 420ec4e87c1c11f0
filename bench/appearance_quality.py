"""Toyworld quality of mutual self-attention, VisCtrl, FreeCustom and Feature Gradual Sampling, each against
its own baseline (the same cases and seeds without the method), per attribute.

VisCtrl and FreeCustom run on generated cases whose reference carries a trained colour and pattern that the
prompt leaves unsaid (toyworld/appearance_cases.py); the held-out concepts are for tuning methods.

Run: python bench/appearance_quality.py [--quick] [--cases N] [--baseline-cases N] [--fgs-objects N] [--rows ...]
     [--passes N] [--model DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


ROWS = ("mutual", "visctrl", "visctrl-x1", "visctrl-crop", "visctrl-ceiling", "freecustom", "freecustom-w6",
        "freecustom-told", "fgs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the case counts the tests pin")
    parser.add_argument("--cases", type=int, default=24, help="VisCtrl and FreeCustom cases per row")
    parser.add_argument("--baseline-cases", type=int, default=8, help="the first N cases also run without the method")
    parser.add_argument("--fgs-objects", type=int, default=9, help="objects (3 views each) per FGS alpha")
    parser.add_argument("--passes", type=int, default=None, help="VisCtrl passes (default: the pipeline's)")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=ROWS, help="rows to measure (default: all)")
    parser.add_argument("--model", default=None, help="toyworld model folder (default: the bundled one)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    import torch

    from pipelines.backbone import Backbone
    from pipelines.settings import VISCTRL_RUN
    from toyworld import load_toyworld_pipeline
    from toyworld.appearance_cases import transfer_cases
    from toyworld.method_eval import mutual_appearance, mutual_background
    from toyworld.transfer_eval import (
        composition_told,
        fgs_views,
        freecustom_composition,
        visctrl_ceiling,
        visctrl_transfer,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_toyworld_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    backbone = Backbone.from_pipeline(pipe)
    cases, baseline_cases = (10, 3) if args.quick else (args.cases, args.baseline_cases)
    rows = set(args.rows)
    start = time.time()
    print("toyworld appearance methods: per attribute, the share of cases met with the method vs the same cases")
    print("and seeds without it (case counts in brackets)")

    def show(name: str, rates) -> None:
        for line in rates.lines(name):
            print("  " + line, flush=True)

    if "mutual" in rows:
        n = 1 if args.quick else 2
        print("  " + mutual_appearance(backbone, seeds=n).line("mutual"))
        print("  " + mutual_background(backbone, seeds=2 * n).line("mutual bg"), flush=True)
    passes = args.passes or VISCTRL_RUN.passes
    if "visctrl" in rows:
        rates = visctrl_transfer(backbone, cases=cases, baseline_cases=baseline_cases, passes=passes)
        show(f"visctrl x{passes}", rates)
        sizes = [c.target.objects[0].size or "medium" for c in transfer_cases(cases)]
        for size in ("small", "medium", "large"):
            hits = [r["colour+pattern"] for r, s in zip(rates.method_rows, sizes, strict=True) if s == size]
            if hits:
                print(f"    target {size:<6}: colour+pattern {sum(hits)}/{len(hits)}", flush=True)
    if "visctrl-x1" in rows:
        show("visctrl x1", visctrl_transfer(backbone, cases=cases, baseline_cases=0, passes=1))
    if "visctrl-crop" in rows:
        show(f"visctrl crop x{passes}", visctrl_transfer(backbone, cases=cases, baseline_cases=0, crop=True,
                                                                    passes=passes))
    if "visctrl-ceiling" in rows:
        show(f"round trip x{passes}", visctrl_ceiling(backbone, cases=cases, passes=passes))
    if "freecustom" in rows:
        show("freecustom w=3", freecustom_composition(backbone, cases=cases, baseline_cases=baseline_cases))
    if "freecustom-w6" in rows:
        show("freecustom w=6", freecustom_composition(backbone, cases=cases, baseline_cases=0, mask_weights=6.0))
    if "freecustom-told" in rows:
        show("told (no refs)", composition_told(backbone, cases=cases))
    if "fgs" in rows:
        objects = 3 if args.quick else args.fgs_objects
        print(f"  Feature Gradual Sampling: {objects} objects x 3 views, VisCtrl x{passes}")
        for alpha in (0.0, 0.5, 1.0):
            v = fgs_views(backbone, alpha, objects=objects, views=3, passes=passes)
            print(f"    alpha {alpha:3.1f}: colour+pattern agree in {v.agree:6.1%} of view pairs, "
                  f"views showing the reference's {v.transferred:6.1%}, mean-colour distance {v.distance:.4f}",
                  flush=True)
    print(f"({time.time() - start:.0f} s) command: python bench/appearance_quality.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
