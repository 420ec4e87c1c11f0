"""Render callables for the quality evaluation, built on a loaded toyworld pipeline.

Why here and not in the bench: the bench, the demo and the pinned test must render identically.
Two generators are offered: diffusers' StableDiffusionPipeline (DDIM), and the studio's own
`pipelines.text_to_image` (the same DDIM loop through the studio's attention processors). Each image's
noise comes from its own torch.Generator seeded with the image's seed, so image i is the same
whether it is rendered alone or in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image


@dataclass
class PipelineRenderer:
    """`render(prompt, seed)` plus `render.batch(prompts, seeds)`; `engine` is "diffusers" or "studio"."""

    pipe: object
    steps: int = 25
    guidance_scale: float = 5.0
    size: int = 64
    engine: str = "diffusers"

    def __call__(self, prompt: str, seed: int) -> Image.Image:
        return self.batch([prompt], [seed])[0]

    def batch(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        if self.engine == "studio":
            from pipelines.backbone import Backbone
            from pipelines.text_to_image import generate

            out = generate(Backbone.from_pipeline(self.pipe), list(prompts), num_inference_steps=self.steps,
                           guidance_scale=self.guidance_scale, width=self.size, height=self.size, generator=gens)
            return list(out.images)
        if self.engine != "diffusers":
            raise ValueError(f"unknown engine {self.engine!r} (diffusers or studio)")
        out = self.pipe(list(prompts), num_inference_steps=self.steps, guidance_scale=self.guidance_scale,
                        height=self.size, width=self.size, generator=gens)
        return list(out.images)


def clip_t_scorer(model_path: Path):
    """A scorer (images, prompts) -> toy CLIP-T cosines, using the bundled full toy-CLIP."""
    from transformers import CLIPTokenizer

    from .metrics.clip_scores import clip_t, load_toy_clip

    clip = load_toy_clip(model_path)
    tokenizer = CLIPTokenizer.from_pretrained(str(Path(model_path) / "tokenizer"))

    def score(images, prompts):
        return clip_t(clip, tokenizer, images, prompts)

    return score
