"""How much a toyworld model's images depend on self-attention, and whether its self-attention matches content.

Why: mutual self-attention, VisCtrl and FreeCustom all act by changing which keys and values a query reads
in self-attention. On a model that barely uses self-attention, or whose self-attention matches by position
rather than content, they can do nothing, however exact they are. This prints three figures per model:

1. ablation: zero every self-attention output (attn1) and compare the images with the stock ones
   (mean |difference| in grey levels, share of prompts whose detected objects change);
2. correspondence: at t = 500, the share of attention that the queries of a target object put on the
   keys of the same kind of object in another image (source object covers `area` of the keys), and the
   attention entropy relative to uniform, per self-attention site;
3. swap: a target prompt generated with its queries reading a source image's keys and values at every
   self-attention site from the first step, against the stock generation: mean |difference|, and how far
   the target's background (its corners) is from the source's, without and with the swap.

Run: python bench/self_attention_use.py [--model DIR ...] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = (
    "a large red striped square in the center, gray background",
    "a small blue dotted circle on the left, white background",
    "a large yellow checkered triangle at the top right, gray background",
    "a green star on the right and a purple square on the left",
    "a large orange ring in the center, black background",
    "a cyan cross at the bottom, gray background",
)


class ZeroOutput:
    """A processor whose attention adds nothing to the residual stream."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        return torch.zeros_like(hidden_states)


class CrossImageProbs:
    """Runs plain attention, and records row 1's queries against row 0's keys (heads averaged)."""

    def __init__(self, name: str, store: dict[str, torch.Tensor]) -> None:
        self.name, self.store = name, store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        b, n, c = hidden_states.shape
        h = attn.heads
        q, k, v = (f(hidden_states).view(b, n, h, c // h).transpose(1, 2) for f in (attn.to_q, attn.to_k, attn.to_v))
        scores = q[1] @ k[0].transpose(-1, -2) * (c // h) ** -0.5  # (h, n, n): target queries x source keys
        self.store[self.name] = scores.softmax(-1).mean(0)  # (n, n)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)  # (b, n, c)
        return attn.to_out[1](attn.to_out[0](out))


def _images(pipe, prompts, seed0: int = 0) -> list[np.ndarray]:
    out = []
    for i, prompt in enumerate(prompts):
        g = torch.Generator().manual_seed(seed0 + i)
        image = pipe(prompt, num_inference_steps=25, guidance_scale=5.0, generator=g, height=64, width=64).images[0]
        out.append(np.asarray(image, np.float32))
    return out


def ablation(pipe) -> tuple[float, float]:
    from PIL import Image

    from toyworld.detector import detect

    def found(images):
        return [sorted((o.shape, o.color, o.pattern) for o in detect(Image.fromarray(im.astype(np.uint8))).objects)
                for im in images]

    stock_processors = pipe.unet.attn_processors
    try:
        stock = _images(pipe, PROMPTS)
        pipe.unet.set_attn_processor({n: ZeroOutput() if n.endswith("attn1.processor") else p
                                      for n, p in stock_processors.items()})
        zeroed = _images(pipe, PROMPTS)
    finally:
        pipe.unet.set_attn_processor(stock_processors)
    diff = float(np.mean([np.abs(a - b).mean() for a, b in zip(stock, zeroed, strict=True)]))
    changed = float(np.mean([a != b for a, b in zip(found(stock), found(zeroed), strict=True)]))
    return diff, changed


def _cells(mask: np.ndarray, side: int) -> torch.Tensor:
    """The latent cells of a side x side grid that the mask covers by more than half."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]  # (1, 1, H, W)
    return F.adaptive_avg_pool2d(m, side).flatten() > 0.5  # (side*side,)


def correspondence(pipe, t: int = 500) -> list[tuple[str, float, float, float]]:
    from diffusers import DDIMScheduler

    from toyworld.world import Background, SceneSpec, make_object, render

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    gray = Background("plain", "gray")
    scenes = [SceneSpec((make_object("star", "red", "striped", "large", "in the center"),), gray),
              SceneSpec((make_object("star", "red", "plain", "large", "on the left"),), gray)]
    renders = [render(s) for s in scenes]
    pixels = torch.stack([torch.from_numpy(r.image).permute(2, 0, 1).float() / 127.5 - 1 for r in renders])
    with torch.no_grad():
        latents = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor  # (2, C, h, w)
        noise = torch.randn(latents[:1].shape, generator=torch.Generator().manual_seed(0)).expand_as(latents)
        noisy = scheduler.add_noise(latents, noise, torch.tensor([t, t]))
        ids = pipe.tokenizer(["a large red star"] * 2, padding="max_length", return_tensors="pt",
                             max_length=pipe.tokenizer.model_max_length).input_ids
        text = pipe.text_encoder(ids)[0]  # (2, T, D)
    store: dict[str, torch.Tensor] = {}
    stock_processors = pipe.unet.attn_processors
    try:
        pipe.unet.set_attn_processor({n: CrossImageProbs(n, store) if n.endswith("attn1.processor") else p
                                      for n, p in stock_processors.items()})
        with torch.no_grad():
            pipe.unet(noisy, torch.tensor([t, t]), text)
    finally:
        pipe.unet.set_attn_processor(stock_processors)
    rows = []
    for name, probs in store.items():
        side = int(probs.shape[0] ** 0.5)

        src, tgt = (_cells(r.objects[0].mask, side) for r in renders)
        if not src.any() or not tgt.any():
            continue  # the object covers no whole cell at this resolution
        mass = float(probs[tgt][:, src].sum(1).mean())
        entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum(1).mean() / np.log(probs.shape[1]))
        rows.append((name.removesuffix(".processor"), mass, float(src.float().mean()), entropy))
    return rows


SWAP_PAIRS = (
    # (source, target, what the target prompt leaves open)
    ("a large red striped star in the center, gray background", "a large blue star in the center, gray background",
     "the pattern"),
    ("a large yellow dotted circle in the center, gray background", "a large yellow square on the left",
     "the pattern and the background"),
)


def swap(pipe) -> list[tuple[str, float, float, float]]:
    """Per pair: mean |swap - stock|, and the corner (background) distance to the source, stock and swapped."""
    from attention_processors.selection import SiteFilter
    from pipelines.backbone import Backbone
    from pipelines.mutual import mutual_edit
    from toyworld.method_eval import corner_rgb

    backbone = Backbone.from_pipeline(pipe)
    rows = []
    for i, (source, target, open_part) in enumerate(SWAP_PAIRS):
        outs = [
            mutual_edit(backbone, target, source_prompt=source, sites=sites, start=0.0, num_inference_steps=25,
                        guidance_scale=5.0, generator=torch.Generator().manual_seed(i), width=64, height=64)
            for sites in (SiteFilter(kind="self", levels=()), SiteFilter(kind="self"))
        ]
        stock, swapped = (np.asarray(o.images[0], np.float32) for o in outs)  # (H, W, 3) each
        source_corners = corner_rgb(outs[0].source)  # the source row is the same in both runs
        rows.append((open_part, float(np.abs(stock - swapped).mean()),
                     float(np.abs(corner_rgb(stock) - source_corners).mean()),
                     float(np.abs(corner_rgb(swapped) - source_corners).mean())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", default=None, help="toyworld model folder (repeatable)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    from toyworld import load_toyworld_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    for model in args.model or [None]:
        pipe = load_toyworld_pipeline(model) if model else load_toyworld_pipeline()
        pipe.set_progress_bar_config(disable=True)
        diff, changed = ablation(pipe)
        print(f"model {model or 'bundled'}")
        print(f"  zero every self-attention output: mean |diff| {diff:.1f} grey levels, "
              f"detected objects change in {changed:.0%} of {len(PROMPTS)} prompts")
        print("  swap K/V from a source at every self-attention site from step 0 (target prompt leaves open: "
              "mean |swap - stock|; background distance to the source, stock -> swapped)")
        for open_part, diff, before, after in swap(pipe):
            print(f"    {open_part:<32} {diff:5.1f}   {before:5.1f} -> {after:5.1f}")
        print("  target-object queries -> source-object keys at t=500 (site: attention share / key area, entropy)")
        for name, mass, area, entropy in correspondence(pipe):
            print(f"    {name:<44} {mass:5.2f} / {area:4.2f}   entropy {entropy:4.2f}")
    print(f"command: python bench/self_attention_use.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
