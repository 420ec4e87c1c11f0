"""What does an image prompt cost? Time per generation with 1 and 2 IP-Adapters against none.

All arms run the same UNet loop on identical inputs (a CFG batch of 2, fixed timesteps) through the
studio's attention processors, as the pipelines do: "plain" with no control, "1 adapter" with one base
IP-Adapter (4 image tokens: 4 extra keys per cross-attention row, one more attention group on the same
query rows), "2 adapters" with a base and a Plus-sized one (4 + 16 tokens). The adapters' `to_k_ip` /
`to_v_ip` weights and image tokens are random (the cost does not depend on their values); image encoding
is once per job and not timed. Arms are interleaved (the order rotates every repeat) so that load from
other processes hits all alike; ratios are of medians. Goal: 1 base adapter <= 1.05x plain.

Models: the bundled toyworld UNet at its working size, and an SD1.5-shaped UNet (the real SD1.5 config,
random weights) at a 32x32 latent.

Run from the repository root:  HF_HUB_OFFLINE=1 .venv/bin/python bench/ip_adapter_overhead.py
Prints one line per model; not a test (nothing is asserted).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attention_overhead import sd15_shaped_unet, unet_inputs

from attention_processors import BatchLayout, attention_control, discover_sites
from attention_processors.ip_adapter import ImageBranch, IPAdapter

TOYWORLD = Path(__file__).resolve().parents[1] / "assets" / "toyworld"


def random_branch(unet: UNet2DConditionModel, tokens: int, seed: int) -> ImageBranch:
    """An image prompt through a random adapter: per cross-attention site, to_k_ip/to_v_ip of the site's shape."""
    g = torch.Generator().manual_seed(seed)
    modules = dict(unet.named_modules())
    weights = {}
    for site in discover_sites(unet):
        if site.is_cross:
            to_k = modules[site.name].to_k.weight  # [inner, C]
            weights[site.name] = (
                torch.randn(to_k.shape, generator=g) * 0.02,
                torch.randn(to_k.shape, generator=g) * 0.02,
            )
    width = unet.config.cross_attention_dim
    return ImageBranch(
        weights=weights,
        tokens=torch.randn(tokens, width, generator=g),  # [T, C]
        negative_tokens=torch.zeros(tokens, width),  # [T, C]
        scale=0.6,
    )


def make_arms(unet: UNet2DConditionModel, inputs: dict, steps: int) -> dict[str, Callable[[], torch.Tensor]]:
    timesteps = torch.linspace(981, 1, steps).long().tolist()
    latent = tuple(inputs["sample"].shape[-2:])
    layout = BatchLayout.with_cfg(["target"] * (inputs["sample"].shape[0] // 2))
    controls = {
        "plain": [],
        "1 adapter": [IPAdapter([random_branch(unet, 4, 1)])],
        "2 adapters": [IPAdapter([random_branch(unet, 4, 1), random_branch(unet, 16, 2)])],
    }

    def arm(chosen: list) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with attention_control(unet, chosen) as state:
                for i, t in enumerate(timesteps):
                    state.update(index=i, total=steps, timestep=t, layout=layout, latent_size=latent)
                    out = unet(**inputs, timestep=t, return_dict=False)[0]
            return out

        return run

    return {name: arm(chosen) for name, chosen in controls.items()}


@torch.no_grad()
def measure(name: str, unet: UNet2DConditionModel, latent: int, steps: int, repeats: int) -> str:
    arms = make_arms(unet, unet_inputs(unet, latent, 2), steps)
    for run in arms.values():
        run()  # warm-up
    order = list(arms)
    times: dict[str, list[float]] = {arm: [] for arm in order}
    for r in range(repeats):
        for arm in order[r % len(order) :] + order[: r % len(order)]:
            start = time.perf_counter()
            arms[arm]()
            times[arm].append(time.perf_counter() - start)
    plain = statistics.median(times["plain"])
    ratios = "  ".join(f"{arm} {statistics.median(times[arm]) / plain:.3f}x" for arm in order[1:])
    return (
        f"{name:<34} {ratios}  (plain median {plain * 1e3:.1f} ms per {steps}-call generation, {repeats} "
        f"interleaved repeats, latent {latent}x{latent}, CFG batch 2)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    parser.add_argument("--toy-repeats", type=int, default=15)
    parser.add_argument("--toy-steps", type=int, default=10)
    parser.add_argument("--sd15-repeats", type=int, default=5)
    parser.add_argument("--sd15-steps", type=int, default=1)
    parser.add_argument("--skip-sd15", action="store_true", help="only toyworld (seconds, not minutes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/ip_adapter_overhead.py " + " ".join(sys.argv[1:])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); reproduce with: {command.strip()}")
    toy = UNet2DConditionModel.from_pretrained(TOYWORLD, subfolder="unet", use_safetensors=True).eval()
    latent = toy.config.sample_size
    print(measure("toyworld UNet", toy, latent, args.toy_steps, args.toy_repeats))
    if not args.skip_sd15:
        print(
            measure("SD1.5-shaped UNet (random weights)", sd15_shaped_unet(), 32, args.sd15_steps, args.sd15_repeats)
        )


if __name__ == "__main__":
    main()
