"""The device-side checks of the compiled path in one command, for a machine with a CUDA GPU.

    python bench/gpu_suite.py            # SD1.5-shaped UNet (random weights), fp16, 64x64 latent, batch 2

Prints one markdown table: per-call medians (interleaved repeats, CUDA-synchronised) of eager and
`unet.compile()` UNet calls through diffusers' stock `AttnProcessor2_0`, through the studio's processors with
no control, and with FreeCustom's MRSA and masked MasaCtrl active; each row's ratio to the stock arm of its
mode; the first compiled call (compile included); the graphs dynamo compiled (one per arm expected) and its
graph breaks (0 expected); and the max |compiled - eager|. No weights or network needed. Not a test.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch._dynamo
from diffusers.models.attention_processor import AttnProcessor2_0
from torch._dynamo.utils import counters

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attention_processors import BatchLayout, attention_control
from attention_processors.multi_reference import MultiReferenceSelfAttention
from attention_processors.mutual_self_attention import MaskPair, MutualSelfAttention
from bench.attention_overhead import sd15_shaped_unet


def blob(size: int, top: int, left: int, extent: int) -> torch.Tensor:
    mask = torch.zeros(size, size)
    mask[top : top + extent, left : left + extent] = 1
    return mask


def arms(latent: int) -> dict[str, tuple[BatchLayout | None, Callable[[], list]]]:
    """Arm name -> (batch layout, controls factory); None layout = stock processors."""
    half = latent // 2
    return {
        "stock": (None, list),
        "studio, no control": (BatchLayout.with_cfg(["target"]), list),
        "studio, MasaCtrl masked": (
            BatchLayout.with_cfg(["source", "target"]),
            lambda: [MutualSelfAttention(masks=MaskPair(blob(latent, 0, 0, half), blob(latent, half, half, half)))],
        ),
        "studio, FreeCustom MRSA": (
            BatchLayout.with_cfg(["target"]) + BatchLayout.without_cfg(["reference", "reference"]),
            lambda: [MultiReferenceSelfAttention(masks=[blob(latent, 0, 0, half), blob(latent, half, 0, half)])],
        ),
    }


def call(unet, layout, controls, inputs: dict, latent: int) -> torch.Tensor:
    if layout is None:
        unet.set_attn_processor(AttnProcessor2_0())
        return unet(**inputs, return_dict=False)[0]
    with attention_control(unet, controls()) as state:
        state.update(index=5, total=10, timestep=500, layout=layout, latent_size=(latent, latent))
        return unet(**inputs, return_dict=False)[0]


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the script on CPU: tiny SD1.5 UNet, fp32, dynamo's eager backend"
    )
    args = parser.parse_args()
    if args.dry_run:
        from pipelines.tiny_models import tiny_sd15_pipeline

        device, dtype, backend = torch.device("cpu"), torch.float32, "eager"
        unet, args.latent, args.repeats = tiny_sd15_pipeline().unet, 16, 2
    elif not torch.cuda.is_available():
        sys.exit("gpu_suite needs a CUDA device (or --dry-run); on CPU run bench/compiled_overhead.py")
    else:
        device, backend = torch.device("cuda"), "inductor"
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
        unet = sd15_shaped_unet().to(device, dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    text_dim = unet.config.cross_attention_dim
    g = torch.Generator().manual_seed(0)
    results = []
    for name, (layout, controls) in arms(args.latent).items():
        batch = 2 if layout is None else layout.size
        inputs = {
            "sample": torch.randn(batch, 4, args.latent, args.latent, generator=g).to(device, dtype),
            "encoder_hidden_states": torch.randn(batch, 77, text_dim, generator=g).to(device, dtype),
            "timestep": torch.tensor(500, device=device),
        }
        run = functools.partial(call, unet, layout, controls, inputs, args.latent)
        unet._compiled_call_impl = None
        eager_out = run()
        torch._dynamo.reset()
        counters.clear()
        unet.compile(backend=backend)
        sync()
        start = time.perf_counter()
        compiled_out = run()
        sync()
        first = time.perf_counter() - start
        graphs_after_first = counters["stats"]["unique_graphs"]
        compiled_fn = unet._compiled_call_impl
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for r in range(args.repeats):
            for mode in ("eager", "compiled") if r % 2 == 0 else ("compiled", "eager"):
                unet._compiled_call_impl = compiled_fn if mode == "compiled" else None
                sync()
                start = time.perf_counter()
                run()
                sync()
                times[mode].append(time.perf_counter() - start)
        unet._compiled_call_impl = None
        results.append(
            (name, batch, statistics.median(times["eager"]), statistics.median(times["compiled"]), first,
             graphs_after_first, counters["stats"]["unique_graphs"], sum(counters["graph_break"].values()),
             (compiled_out.float() - eager_out.float()).abs().max().item())
        )  # fmt: skip
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU dry run"
    print(f"{where}, torch {torch.__version__}, {dtype}, latent {args.latent}, "
          f"{args.repeats} interleaved repeats; command: python bench/gpu_suite.py {' '.join(sys.argv[1:])}")  # fmt: skip
    print(
        "| arm | batch | eager ms | compiled ms | compiled/eager | first compiled call s | graphs | breaks | max diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, batch, eager, compiled, first, g1, g2, breaks, diff in results:
        print(
            f"| {name} | {batch} | {eager * 1e3:.2f} | {compiled * 1e3:.2f} | {compiled / eager:.3f} | {first:.1f} "
            f"| {g1}->{g2} | {breaks} | {diff:.1e} |"
        )
    stock = results[0]
    plain = results[1]
    print(
        f"studio/stock, no control: eager {plain[2] / stock[2]:.3f}, compiled {plain[3] / stock[3]:.3f} "
        "(same batch of 2)"
    )


if __name__ == "__main__":
    main()
