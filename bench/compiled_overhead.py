"""torch.compile through the studio's processors: compiled studio vs compiled stock, and each vs eager.

Four arms run the same DDIM-shaped UNet loop on identical inputs (a CFG batch of 2, fixed timesteps, no
control): eager stock (`AttnProcessor2_0`), eager studio (`attention_control(unet, ())`, installed once per
generation and the step state updated before every call, as the pipelines do), and the same two with the UNet
compiled in place (`unet.compile()`, inductor, as `--compile` does). Compilation happens in a warm-up outside
the timing; arms are interleaved (the order rotates every repeat) and ratios are of the medians. The script
also prints how many graphs dynamo compiled in total (a recompile per generation or per step would show here)
and the first compiled call's wall time per arm.

Run from the repository root:  HF_HUB_OFFLINE=1 .venv/bin/python bench/compiled_overhead.py
Prints one block per model; not a test (nothing is asserted).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch._dynamo
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from torch._dynamo.utils import counters

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.attention_overhead import make_arms as eager_arms
from bench.attention_overhead import sd15_shaped_unet, unet_inputs
from pipelines.tiny_models import tiny_sd15_pipeline


def make_arms(unet: UNet2DConditionModel, inputs: dict, steps: int) -> dict[str, Callable[[], torch.Tensor]]:
    """`stock` and `studio` generation loops of `steps` UNet calls (attention_overhead's arms): the stock
    processors are installed once, and the studio arm puts the same objects back after every run."""
    unet.set_attn_processor(AttnProcessor2_0())
    arms = eager_arms(unet, inputs, steps)
    return {"stock": arms["stock"], "studio": arms["ours"]}


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@torch.no_grad()
def measure(name: str, unet: UNet2DConditionModel, latent: int, steps: int, repeats: int) -> list[str]:
    inputs = unet_inputs(unet, latent, 2)
    arms = make_arms(unet, inputs, steps)
    torch._dynamo.reset()
    counters.clear()
    eager = {arm: fn() for arm, fn in arms.items()}  # warm-up and the eager outputs
    unet.compile()
    first = {}
    compiled_out = {}
    for arm, fn in arms.items():
        first[arm], compiled_out[arm] = timed(fn)  # compiles this arm's graph
    graphs_after_warmup = counters["stats"]["unique_graphs"]
    order = [("eager", "stock"), ("eager", "studio"), ("compiled", "stock"), ("compiled", "studio")]
    times: dict[tuple[str, str], list[float]] = {key: [] for key in order}
    for r in range(repeats):
        for mode, arm in order[r % 4 :] + order[: r % 4]:
            if mode == "eager":
                unet._compiled_call_impl, saved = None, unet._compiled_call_impl
                times[(mode, arm)].append(timed(arms[arm])[0])
                unet._compiled_call_impl = saved
            else:
                times[(mode, arm)].append(timed(arms[arm])[0])
    unet._compiled_call_impl = None
    med = {key: statistics.median(v) for key, v in times.items()}
    diff = max((compiled_out[a] - eager[a]).abs().max().item() for a in arms)
    lines = [f"{name}: {steps}-call generation, latent {latent}x{latent}, batch 2, {repeats} interleaved repeats"]
    for label, a, b in (
        ("compiled studio / compiled stock", ("compiled", "studio"), ("compiled", "stock")),
        ("eager studio / eager stock      ", ("eager", "studio"), ("eager", "stock")),
        ("compiled studio / eager studio  ", ("compiled", "studio"), ("eager", "studio")),
        ("compiled stock / eager stock    ", ("compiled", "stock"), ("eager", "stock")),
    ):
        lines.append(f"  {label} = {med[a] / med[b]:.3f}  ({med[a] * 1e3:.1f} vs {med[b] * 1e3:.1f} ms)")
    lines.append(
        f"  first compiled generation (compile included): studio {first['studio']:.1f} s, stock {first['stock']:.1f} s"
    )
    graphs = counters["stats"]["unique_graphs"]
    breaks = sum(counters["graph_break"].values())
    lines.append(
        f"  graphs compiled: {graphs_after_warmup} in warm-up, {graphs} after all repeats; graph breaks {breaks}"
    )
    lines.append(f"  max |compiled - eager| = {diff:.1e}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    parser.add_argument("--tiny-repeats", type=int, default=12)
    parser.add_argument("--tiny-steps", type=int, default=10)
    parser.add_argument("--sd15-repeats", type=int, default=4)
    parser.add_argument("--sd15-steps", type=int, default=1)
    parser.add_argument("--skip-tiny", action="store_true", help="only the SD1.5-shaped UNet")
    parser.add_argument("--skip-sd15", action="store_true", help="only the tiny model (compiles in under a minute)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/compiled_overhead.py " + " ".join(sys.argv[1:])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); reproduce with: {command.strip()}")
    if not args.skip_tiny:
        for line in measure("tiny SD1.5 (64 px)", tiny_sd15_pipeline().unet, 32, args.tiny_steps, args.tiny_repeats):
            print(line, flush=True)
    if not args.skip_sd15:
        for line in measure(
            "SD1.5-shaped UNet (random weights)", sd15_shaped_unet(), 32, args.sd15_steps, args.sd15_repeats
        ):
            print(line, flush=True)


if __name__ == "__main__":
    main()
