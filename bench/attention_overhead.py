"""How much slower is plain generation through the studio's attention processors than through stock ones?

Both arms run the same DDIM-shaped UNet loop on identical inputs (a CFG batch of 2, fixed timesteps): the
"ours" arm inside `attention_control(unet, ())` with the step state updated before every UNet call, exactly
as the pipelines do (installation included, once per generation); the "stock" arm with diffusers'
`AttnProcessor2_0` installed. Arms are interleaved (the order alternates every repeat) so that load from
other processes hits both alike, and the ratio is of the medians. Goal: ratio <= 1.03.

Models: the tiny SD1.5/SDXL test models (64 px, 32x32 latents), where per-call Python overhead matters
most, and an SD1.5-shaped UNet (the real SD1.5 config, random weights) at a 32x32 latent.

Run from the repository root:  HF_HUB_OFFLINE=1 .venv/bin/python bench/attention_overhead.py
Prints one line per model; not a test (nothing is asserted).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from attention_processors import BatchLayout, attention_control
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline


def sd15_shaped_unet() -> UNet2DConditionModel:
    """The real SD1.5 UNet config (859.5 M parameters), random weights."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    ).eval()


def unet_inputs(unet: UNet2DConditionModel, latent: int, batch: int) -> dict:
    """Fixed random UNet inputs of the right shapes (SDXL-style added conditioning when the UNet wants it)."""
    g = torch.Generator().manual_seed(0)
    inputs = {
        "sample": torch.randn(batch, unet.config.in_channels, latent, latent, generator=g),  # (B, C, h, w)
        "encoder_hidden_states": torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g),
    }
    if unet.config.addition_embed_type == "text_time":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, generator=g),  # (B, P)
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]).repeat(batch, 1),  # (B, 6)
        }
    return inputs


def make_arms(unet: UNet2DConditionModel, inputs: dict, steps: int) -> dict[str, Callable[[], torch.Tensor]]:
    """Two callables that each run one `steps`-call generation loop and return the last output."""
    timesteps = torch.linspace(981, 1, steps).long().tolist()
    latent = inputs["sample"].shape[-1]
    layout = BatchLayout.with_cfg(["target"] * (inputs["sample"].shape[0] // 2))

    def stock() -> torch.Tensor:
        for t in timesteps:
            out = unet(**inputs, timestep=t, return_dict=False)[0]
        return out

    def ours() -> torch.Tensor:
        with attention_control(unet, ()) as state:
            for i, t in enumerate(timesteps):
                state.update(index=i, total=steps, timestep=t, layout=layout, latent_size=(latent, latent))
                out = unet(**inputs, timestep=t, return_dict=False)[0]
        return out

    return {"ours": ours, "stock": stock}


@torch.no_grad()
def measure(name: str, unet: UNet2DConditionModel, latent: int, batch: int, steps: int, repeats: int) -> str:
    unet.set_attn_processor(AttnProcessor2_0())
    arms = make_arms(unet, unet_inputs(unet, latent, batch), steps)
    outputs = {arm: fn() for arm, fn in arms.items()}  # warm-up, and the check that the arms agree
    times: dict[str, list[float]] = {"ours": [], "stock": []}
    for r in range(repeats):
        for arm in ("ours", "stock") if r % 2 == 0 else ("stock", "ours"):
            start = time.perf_counter()
            arms[arm]()
            times[arm].append(time.perf_counter() - start)
    ours, stock = statistics.median(times["ours"]), statistics.median(times["stock"])
    diff = (outputs["ours"] - outputs["stock"]).abs().max().item()
    return (
        f"{name:<34} ratio ours/stock = {ours / stock:.3f}  (median {ours * 1e3:.1f} ms vs {stock * 1e3:.1f} ms per "
        f"{steps}-call generation, {repeats} interleaved repeats, latent {latent}x{latent}, batch {batch}, "
        f"max |ours - stock| = {diff:.1e})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    parser.add_argument("--tiny-repeats", type=int, default=31)
    parser.add_argument("--tiny-steps", type=int, default=10)
    parser.add_argument("--sd15-repeats", type=int, default=4)
    parser.add_argument("--sd15-steps", type=int, default=1)
    parser.add_argument("--skip-sd15", action="store_true", help="only the tiny models (seconds, not minutes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/attention_overhead.py " + " ".join(sys.argv[1:])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); reproduce with: {command.strip()}")
    print(measure("tiny SD1.5 (64 px)", tiny_sd15_pipeline().unet, 32, 2, args.tiny_steps, args.tiny_repeats))
    print(measure("tiny SDXL (64 px)", tiny_sdxl_pipeline().unet, 32, 2, args.tiny_steps, args.tiny_repeats))
    if not args.skip_sd15:
        unet = sd15_shaped_unet()
        print(measure("SD1.5-shaped UNet (random weights)", unet, 32, 2, args.sd15_steps, args.sd15_repeats))


if __name__ == "__main__":
    main()
