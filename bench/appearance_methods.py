"""Time per image of mutual self-attention, VisCtrl and FreeCustom relative to plain generation.

Every method and the plain baseline run side by side in one process on the same backbone, interleaved
over repeats, and the median ratio is printed. FreeCustom with R references must stay within
1.1·(1 + R/2) x plain (the official structure costs 1 + R: a CFG pair per reference).

Models: `toyworld` (the bundled model, 64 px) and `sd15-shaped` (SD1.5's UNet config with random
weights, a tiny VAE and text encoder, 64 px images = 32x32 latents: the UNet dominates).
Run: python bench/appearance_methods.py [--model toyworld|sd15-shaped] [--steps N] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def sd15_shaped_backbone():
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from pipelines.backbone import Backbone
    from pipelines.tiny_models import _tiny_vae, clip_tokenizer, ddim_scheduler

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=32, cross_attention_dim=768, attention_head_dim=8)  # SD1.5 layout
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=1024,
            num_hidden_layers=1,
            num_attention_heads=12,
            max_position_embeddings=77,
            projection_dim=768,
        )
    )
    pipe = StableDiffusionPipeline(
        vae=_tiny_vae(),
        text_encoder=text,
        tokenizer=clip_tokenizer(),
        unet=unet.eval(),
        scheduler=ddim_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return Backbone.from_pipeline(pipe)


def toyworld_backbone():
    from pipelines.backbone import Backbone
    from toyworld import load_toyworld_pipeline

    return Backbone.from_pipeline(load_toyworld_pipeline())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="toyworld", choices=["toyworld", "sd15-shaped"])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--only", default="", help="time plain plus the methods whose name starts with this")
    args = parser.parse_args()
    backbone = toyworld_backbone() if args.model == "toyworld" else sd15_shaped_backbone()
    steps = args.steps or (25 if args.model == "toyworld" else 3)
    repeats = args.repeats or (3 if args.model == "toyworld" else 1)
    size = min(backbone.default_size)

    from pipelines.customize import Reference, freecustom
    from pipelines.mutual import mutual_edit
    from pipelines.text_to_image import generate
    from pipelines.visctrl import VisCtrlPass, visctrl

    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    kw = dict(num_inference_steps=steps, width=size, height=size)
    image = generate(backbone, "a red star", generator=g(), **kw).images[0]
    mask = torch.zeros(size, size)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    ref = Reference(image, mask, "a red star")
    one_pass = VisCtrlPass(steps, 6.0, 0.2)
    runs = {
        "plain": lambda: generate(backbone, "a blue circle", guidance_scale=7.5, generator=g(), **kw),
        "mutual (synthesis)": lambda: mutual_edit(
            backbone, "a blue circle", source_prompt="a red star", generator=g(), **kw
        ),
        "mutual (real image)": lambda: mutual_edit(
            backbone, "a blue circle", source_image=image, num_inference_steps=steps
        ),
        "visctrl (1 pass)": lambda: visctrl(backbone, image, mask, [(image, mask)], first_pass=one_pass, crop=False),
        **{
            f"freecustom R={r}": (lambda r=r: freecustom(backbone, "a blue circle", [ref] * r, generator=g(), **kw))
            for r in (1, 2, 3)
        },
    }
    runs = {name: fn for name, fn in runs.items() if name == "plain" or name.startswith(args.only)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    runs["plain"]()  # warm-up
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    plain = statistics.median(times["plain"])
    print(f"{args.model}: {steps} steps, {size}px, {repeats} repeat(s); plain = {plain:.2f} s/image")
    for name, ts in times.items():
        ratio = statistics.median(ts) / plain
        note = ""
        if name.startswith("freecustom"):
            r = int(name.split("=")[1])
            bound = 1.1 * (1 + r / 2)
            note = f"  (goal <= {bound:.2f}, official structure {1 + r:.1f})"
        print(f"  {name:<22} {ratio:5.2f}x{note}")
    only = f" --only {args.only}" if args.only else ""
    command = f"python bench/appearance_methods.py --model {args.model} --steps {steps} --repeats {repeats}{only}"
    print(f"command: {command}")


if __name__ == "__main__":
    main()
