"""Toyworld quality of mutual self-attention, VisCtrl and FreeCustom, each against its own baseline.

Run: python bench/appearance_quality.py [--quick] [--model DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer cases (the sizes the tests pin)")
    parser.add_argument("--model", default=None, help="toyworld model folder (default: the bundled one)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    import torch

    from pipelines.backbone import Backbone
    from toyworld import load_toyworld_pipeline
    from toyworld.method_eval import (
        VISCTRL_CONCEPTS,
        Rates,
        freecustom_composition,
        mutual_appearance,
        mutual_background,
        visctrl_transfer,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = Backbone.from_pipeline(load_toyworld_pipeline(args.model))
    n = 1 if args.quick else 3
    start = time.time()
    def visctrl_rows(name: str, **options) -> list[tuple[str, Rates]]:
        """The VisCtrl row over all concepts, then one row per concept (same cases, split)."""
        parts = [visctrl_transfer(backbone, concepts=(c,), cases=2 * n, **options) for c in VISCTRL_CONCEPTS]
        return [(name, Rates.combined(parts))] + [(f"  {c}", r) for c, r in zip(VISCTRL_CONCEPTS, parts, strict=True)]

    rows = [
        ("mutual", mutual_appearance(backbone, seeds=n)),
        ("mutual bg", mutual_background(backbone, seeds=2 * n)),
        *visctrl_rows("visctrl"),
        *visctrl_rows("visctrl crop", crop=True),
        *visctrl_rows("visctrl x3", passes=3),
        ("freecustom", freecustom_composition(backbone, seeds=8 * n)),
    ]
    print("toyworld appearance methods: success rate with the method vs the same run without it")
    for name, rates in rows:
        print("  " + rates.line(name))
    print(
        f"({time.time() - start:.0f} s) command: python bench/appearance_quality.py {' '.join(sys.argv[1:])}"
    )


if __name__ == "__main__":
    main()
