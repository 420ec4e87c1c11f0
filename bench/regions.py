"""RAG regional prompting on toyworld: time per image against plain generation, and the binding / repaint
success tables against their baselines (the same seeds without the method).

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer scenes (the sizes the tests pin)")
    parser.add_argument("--scenes", type=int, default=0, help="scenes per table (default 8, quick 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    import torch

    from pipelines.backbone import Backbone
    from toyworld import load_toyworld_pipeline
    from toyworld.region_eval import region_binding, repaint_change

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_toyworld_pipeline()
    pipe.set_progress_bar_config(disable=True)
    backbone = Backbone.from_pipeline(pipe)
    scenes = args.scenes or (4 if args.quick else 8)
    start = time.time()

    times = timing(backbone, (2, 3, 4), args.repeats)
    plain = times[0][1]
    print(f"time per image (toyworld 64 px, 25 DDIM steps, CFG 5; best of {args.repeats}, side by side)")
    for name, seconds in times:
        print(f"  {name:<10} {seconds:7.3f} s   {seconds / plain:5.2f}x plain")

    print("toyworld regional prompting: success rate with the method vs the same seeds without it")
    caption = " {position}, gray background"  # the region prompt as a toyworld caption of the region
    rows = []
    for style, suffix in (("object words", ""), ("region caption", caption)):
        two, three = (region_binding(backbone, n, scenes=scenes, suffix=suffix) for n in (2, 3))
        rows += [
            (f"2 objects, {style}: images", two.images),
            (f"2 objects, {style}: objects", two.objects),
            (f"3 objects, {style}: images", three.images),
            (f"3 objects, {style}: objects", three.objects),
            (f"repaint, {style}", repaint_change(backbone, scenes=scenes, suffix=suffix)),
        ]
    for name, rates in rows:
        print(f"  {name:<36} method {rates.method:6.1%}   baseline {rates.baseline:6.1%}   ({rates.cases} cases)")
    print(f"({time.time() - start:.0f} s) command: python bench/regions.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
