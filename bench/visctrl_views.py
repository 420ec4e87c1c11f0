"""Cross-view consistency of VisCtrl with Feature Gradual Sampling (FGS), against editing views apart.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/visctrl_views.py [--alphas 0 0.5 1] [--objects 9] [--views 3] [--passes N]

Each case (generated: toyworld/appearance_cases.py, view_cases) is one target object rendered at several
positions (the "views") and a reference object of another colour and a pattern, both trained attributes.
alpha = 0 edits the views independently in one batch (plain VisCtrl); alpha > 0 lets view k attend to
tokens sampled from views already edited. Printed per alpha: the share of view pairs whose detected colour
and pattern agree, the share of views showing the reference's colour and pattern, and the mean distance
between the views' mean object colours (0..1). The same table closes bench/appearance_quality.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch

    from pipelines.backbone import Backbone
    from toyworld import load_toyworld_pipeline, toyworld_path
    from toyworld.transfer_eval import fgs_views

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=toyworld_path())
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    p.add_argument("--objects", type=int, default=9)
    p.add_argument("--views", type=int, default=3)
    p.add_argument("--passes", type=int, default=None, help="VisCtrl passes (default: the pipeline's)")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = Backbone.from_pipeline(load_toyworld_pipeline(args.model))
    print(f"VisCtrl views on {args.model}: {args.objects} objects x {args.views} views, VisCtrl defaults")
    for alpha in args.alphas:
        start = time.time()
        options = {} if args.passes is None else {"passes": args.passes}
        v = fgs_views(backbone, alpha, objects=args.objects, views=args.views, **options)
        print(f"  alpha {alpha:4.2f}: colour+pattern agree {v.agree:6.1%} of view pairs, views showing the "
              f"reference's {v.transferred:6.1%}, mean-colour distance {v.distance:.4f} ({time.time() - start:.0f} s)")
    print("command: python bench/visctrl_views.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
