"""RAG regional prompting on toyworld: time per image against plain generation, what the model draws alone
(a region's own small latent; each object alone), the per-phase binding ablation (hard binding only, soft
refinement only, both, neither) under three ways of saying the regions, and repainting; each against the same
seeds without the method.

Run: python bench/regions.py [--quick] [--scenes N] [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time


def timing(backbone, regions_counts: tuple[int, ...], repeats: int) -> list[tuple[str, float]]:
    """Seconds per image (best of `repeats`, interleaved side by side) for plain generation and each count."""
    import torch

    from pipelines.regional_prompting import regional
    from pipelines.regions import Region
    from pipelines.text_to_image import generate

    kwargs = {"num_inference_steps": 25, "guidance_scale": 5.0, "width": 64, "height": 64}
    side = 1 / 3
    cells = [(x * side, y * side, side, side) for y in range(3) for x in range(3)]

    def plain() -> None:
        generate(backbone, "a red circle, gray background", generator=torch.Generator().manual_seed(0), **kwargs)

    def with_regions(n: int):
        regions = [Region("a blue square", box=cells[i]) for i in range(n)]

        def run() -> None:
            regional(backbone, "a red circle, gray background", regions,
                     generator=torch.Generator().manual_seed(0), **kwargs)  # fmt: skip

        return run

    runs = [("plain", plain)] + [(f"{n} regions", with_regions(n)) for n in regions_counts]
    best = {name: float("inf") for name, _ in runs}
    for name, run in runs:
        run()  # warm-up
    for _ in range(repeats):
        for name, run in runs:
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return [(name, best[name]) for name, _ in runs]


ARMS = ("neither", "hard binding only", "soft refinement only", "both")


def arms(binding: float, delta: float) -> dict[str, dict[str, float]]:
    """The per-phase ablation: each phase switched on alone, both, and neither (which is the baseline itself)."""
    return {
        "neither": {"binding": 0.0, "delta": 0.0},
        "hard binding only": {"binding": binding, "delta": 0.0},
        "soft refinement only": {"binding": 0.0, "delta": delta},
        "both": {"binding": binding, "delta": delta},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer scenes")
    parser.add_argument("--scenes", type=int, default=0, help="scenes per binding table (default 16, quick 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    import torch

    from attention_processors.settings import REGIONAL
    from pipelines.backbone import Backbone
    from toyworld import load_toyworld_pipeline
    from toyworld.region_eval import (
        BOX,
        HALF_WORDS,
        OBJECT_WORDS,
        POSITIONED,
        binding_arms,
        objects_alone,
        region_alone,
        repaint_change,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_toyworld_pipeline()
    pipe.set_progress_bar_config(disable=True)
    backbone = Backbone.from_pipeline(pipe)
    scenes = args.scenes or (4 if args.quick else 16)
    start = time.time()

    times = timing(backbone, (2, 3, 4), args.repeats)
    plain = times[0][1]
    print(f"time per image (toyworld 64 px, 25 DDIM steps, CFG 5; best of {args.repeats}, side by side)")
    for name, seconds in times:
        print(f"  {name:<10} {seconds:7.3f} s   {seconds / plain:5.2f}x plain")

    print(f"what the model draws alone ({scenes // 2} two-object scenes, seed = scene)")
    for side in (BOX, 0.5, 1.0):
        cells = round(side * 16)
        share = region_alone(backbone, side, scenes=scenes // 2)
        print(f"  a region's own {cells}x{cells} latent, all 25 steps, object words: right {share:6.1%}")
    for count in (2, 3):
        share = objects_alone(backbone, count, scenes=scenes, side=POSITIONED.side)
        print(f"  each object of the {count}-object scenes alone, said with its position: in its region {share:6.1%}")

    print(f"regional binding, per-phase ablation ({scenes} scenes, seed 0; baseline = the scene in one global prompt)")
    protocols = (("object words", OBJECT_WORDS), ("half boxes", HALF_WORDS), ("positioned", POSITIONED))
    for style, protocol in protocols:
        print(f"  {style}: {protocol.describe()}; binding {protocol.binding:g}, delta {REGIONAL.delta:g}")
        for count in (2, 3):
            settings = arms(protocol.binding, REGIONAL.delta)
            rates = binding_arms(backbone, count, scenes, settings, **protocol.region_args())
            base = rates["both"]
            print(f"    {count} objects {'baseline':<21} images {base.images.baseline:6.1%}"
                  f"   objects {base.objects.baseline:6.1%}")  # fmt: skip
            for name in ARMS:
                r = rates[name]
                print(f"    {count} objects {name:<21} images {r.images.method:6.1%}   objects {r.objects.method:6.1%}"
                      f"   ({r.images.cases} images)")  # fmt: skip

    print(f"the gated protocols on the next seed (seed 1, the same {scenes} scenes), both phases")
    for count, (style, protocol) in ((2, protocols[2]), (3, protocols[1])):
        settings = {"both": {"binding": protocol.binding, "delta": REGIONAL.delta}}
        r = binding_arms(backbone, count, scenes, settings, first_seed=1, **protocol.region_args())["both"]
        print(f"  {count} objects, {style:<10} images {r.images.method:6.1%} (baseline {r.images.baseline:6.1%})"
              f"   objects {r.objects.method:6.1%} (baseline {r.objects.baseline:6.1%})")  # fmt: skip

    print("repaint: the region shows the new object, vs regenerating with it in the global prompt (8 scenes)")
    for style, suffix in (("object words", ""), ("region caption", " {position}, gray background")):
        rates = repaint_change(backbone, scenes=8, suffix=suffix)
        print(f"  {style:<15} method {rates.method:6.1%}   baseline {rates.baseline:6.1%}   ({rates.cases} cases)")
    print(f"({time.time() - start:.0f} s) command: python bench/regions.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
