"""Toyworld IP-Adapter: appearance transfer per attribute with the bundled adapter and without it, and the
adapter's training time.

Cases and scoring: toyworld/image_prompt_eval.py (generated references with an unsaid pattern; the text is
empty, or "an object <place>" naming another place than the reference's; two masked image prompts for the
left and right halves). Case i uses seed i; the baseline is the same text and seed without image prompts.

Run: python bench/toyworld_ip_adapter.py [--cases N] [--baseline-cases N] [--scales 1.0 0.5] [--adapter FILE]
     [--model DIR] [--threads N]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=24, help="cases per row")
    parser.add_argument("--baseline-cases", type=int, default=8, help="the first N cases also run without adapter")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5], help="image prompt scales to measure")
    parser.add_argument("--rows", nargs="*", default=["empty", "placed", "halves"],
                        choices=["empty", "placed", "halves", "told"],
                        help="told: no image prompt, the look said in the text (the model's own ceiling)")
    parser.add_argument("--adapter", type=Path, default=None, help="adapter file (default: the bundled one)")
    parser.add_argument("--model", default=None, help="toyworld model folder (default: the bundled one)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    from pipelines.backbone import Backbone
    from pipelines.ip_adapter_weights import load_adapter
    from toyworld import load_toyworld_pipeline, toyworld_ip_adapter, toyworld_path
    from toyworld.image_prompt_eval import image_prompt_cases, image_prompt_transfer, regional_image_prompts, told_ceiling

    torch.set_num_threads(args.threads)
    pipe = load_toyworld_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    backbone = Backbone.from_pipeline(pipe)
    adapter_path = args.adapter or (Path(args.model) / "ip_adapter" / Path(toyworld_ip_adapter()).name
                                    if args.model else toyworld_ip_adapter())
    adapter = load_adapter(adapter_path)
    print(f"adapter {adapter_path} ({adapter.kind}); {args.cases} cases per row, baseline on the first "
          f"{args.baseline_cases}; DDIM 25 steps, CFG 5")
    start = time.time()
    if "told" in args.rows:  # no image prompt, so no scale
        for placed in (False, True):
            for line in told_ceiling(backbone, args.cases, placed).lines("told, " + ("placed" if placed else "no place")):
                print(line, flush=True)
    for scale in args.scales:
        for row in [r for r in args.rows if r != "told"]:
            if row == "halves":
                rates = regional_image_prompts(backbone, adapter, args.cases, scale, args.baseline_cases)
            else:
                rates = image_prompt_transfer(backbone, adapter, args.cases, row == "placed", scale,
                                              args.baseline_cases)
            for line in rates.lines(f"{row} s={scale:g}"):
                print(line, flush=True)
            if row != "halves":  # shape is the hard attribute: where it fails, by the reference's size
                sizes = [c.reference.objects[0].size or "medium" for c in image_prompt_cases(args.cases, row == "placed")]
                print(f"{row} s={scale:g}      shape by reference size: " + ", ".join(
                    f"{size} {sum(r['shape'] for r, z in zip(rates.method_rows, sizes) if z == size)}"
                    f"/{sizes.count(size)}" for size in ("small", "medium", "large")), flush=True)
    print(f"measured in {time.time() - start:.0f} s")
    report = (Path(args.model) if args.model else toyworld_path()) / "ip_adapter" / "training_report_ip_adapter.json"
    if report.exists():
        stage = json.loads(report.read_text())
        tower = stage.get("tower", {})
        print(f"tower stage: {tower.get('steps')} steps in {tower.get('seconds', 0) / 60:.1f} min; "
              f"adapter stage: {stage.get('steps')} steps in {stage.get('seconds', 0) / 60:.1f} min "
              f"({stage.get('args', {}).get('threads')} CPU thread(s)), "
              f"{stage.get('trainable_parameters', 0) / 1e6:.2f} M trained parameters (tower included)")


if __name__ == "__main__":
    main()
