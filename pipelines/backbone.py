"""One wrapper that hides the differences between SD1.x/2.x and SDXL from every pipeline.

Why: the official MasaCtrl/VisCtrl/FreeCustom codes hard-code SD1.x (one text encoder, the 0.18215 VAE
scale), so their real-image paths break on SDXL. Here every pipeline talks to a `Backbone`: prompts in,
UNet conditioning out (SDXL's two encoders, pooled embeddings and added time ids included); images in,
scaled latents out, with the VAE's scale, shift and per-channel statistics read from its config. The
diffusers pipeline's own `encode_prompt` and `_get_add_time_ids` do the encoding, so textual inversion,
text-encoder LoRA and diffusers' SDXL zero-negative rule behave as they do in diffusers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import PIL.Image
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from torch import Tensor

from attention_processors.layout import Half
from pipelines.prompt_encoder import encode_with_compel, needs_compel


@dataclass(frozen=True)
class PromptEmbeds:
    """Text conditioning for N latent streams, each half kept per stream so any batch layout can be built."""

    cond: Tensor  # (N, L, D): the prompt of each stream
    uncond: Tensor | None  # (N, L, D): its negative prompt; None when encoded without CFG
    cond_pooled: Tensor | None = None  # (N, P): SDXL's pooled text_encoder_2 output
    uncond_pooled: Tensor | None = None  # (N, P)
    notes: tuple[str, ...] = ()  # what the user should know, e.g. a prompt truncated beyond the chunk limit

    def __len__(self) -> int:
        return self.cond.shape[0]


@dataclass(frozen=True)
class UNetConditioning:
    """The UNet's conditioning inputs for one batch, rows in batch-layout order."""

    encoder_hidden_states: Tensor  # (B, L, D)
    added_cond_kwargs: dict[str, Tensor] | None  # SDXL: {"text_embeds": (B, P), "time_ids": (B, 6)}; else None


@dataclass(frozen=True)
class Backbone:
    """The components of a loaded diffusers SD1.x/2.x or SDXL pipeline, behind one family-neutral API."""

    pipe: StableDiffusionPipeline | StableDiffusionXLPipeline = field(repr=False)
    is_sdxl: bool

    @classmethod
    def from_pipeline(cls, pipe: StableDiffusionPipeline | StableDiffusionXLPipeline) -> Backbone:
        """Wrap a text-to-image pipeline; img2img/inpaint variants can be rebuilt as one from `pipe.components`."""
        if isinstance(pipe, StableDiffusionXLPipeline):
            return cls(pipe, is_sdxl=True)
        if isinstance(pipe, StableDiffusionPipeline):
            return cls(pipe, is_sdxl=False)
        raise TypeError(
            f"Backbone wraps a StableDiffusionPipeline or StableDiffusionXLPipeline, got {type(pipe).__name__}; "
            "rebuild it with e.g. StableDiffusionXLPipeline(**pipe.components)"
        )

    # ---- components and geometry -------------------------------------------------------------------------

    @property
    def unet(self) -> torch.nn.Module:
        return self.pipe.unet

    @property
    def vae(self) -> torch.nn.Module:
        return self.pipe.vae

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device  # follows diffusers' CPU-offload hooks, unlike `unet.device`

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along each axis (8 for the real models, 2 for the tiny test models)."""
        return int(self.pipe.vae_scale_factor)

    @property
    def size_multiple(self) -> int:
        """Image sizes must be multiples of this: the VAE factor times the UNet's total downsampling.

        Why: diffusers tolerates other sizes by interpolating in the up path, but then a down-block's token
        grid is no longer the latent grid halved an integer number of times, and controls that place masks
        or regions on an attention site's grid would be misaligned.
        """
        return self.vae_scale_factor * 2 ** int(self.unet.num_upsamplers)

    @property
    def default_size(self) -> tuple[int, int]:
        """(height, width) the model was trained at: the UNet's sample size times the VAE factor."""
        sample = self.unet.config.sample_size
        h, w = (sample, sample) if isinstance(sample, int) else tuple(sample)
        return h * self.vae_scale_factor, w * self.vae_scale_factor

    @property
    def prediction_type(self) -> str:
        """From the scheduler config: "epsilon" (SD1.x, SDXL), "v_prediction" (SD2.x 768) or "sample"."""
        return self.pipe.scheduler.config.get("prediction_type", "epsilon")

    @property
    def scheduler_config(self) -> dict:
        return dict(self.pipe.scheduler.config)

    def ddim_scheduler(self) -> DDIMScheduler:
        """A fresh DDIM scheduler with the model's own betas, prediction type and spacing.

        Fresh per call because `set_timesteps` mutates a scheduler, and a backbone may serve several jobs.
        """
        return DDIMScheduler.from_config(self.pipe.scheduler.config)

    def check_size(self, height: int, width: int) -> None:
        """Raise a ValueError naming the nearest valid size when (height, width) cannot be generated exactly."""
        m = self.size_multiple
        if height > 0 and width > 0 and height % m == 0 and width % m == 0:
            return
        near_h, near_w = max(m, round(height / m) * m), max(m, round(width / m) * m)
        raise ValueError(
            f"height and width must be positive multiples of {m} (VAE factor {self.vae_scale_factor} x UNet "
            f"downsampling {m // self.vae_scale_factor}), got {height}x{width} (HxW); nearest valid: {near_h}x{near_w}"
        )

    def resolve_size(self, height: int | None, width: int | None) -> tuple[int, int]:
        """(height, width) with the model's default for what is None, checked for this model."""
        default_h, default_w = self.default_size
        height = default_h if height is None else height
        width = default_w if width is None else width
        self.check_size(height, width)
        return height, width

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        self.check_size(height, width)
        return height // self.vae_scale_factor, width // self.vae_scale_factor

    def image_size(self, latents: Tensor) -> tuple[int, int]:
        """(height, width) in pixels of latents (N, C, h, w)."""
        return latents.shape[-2] * self.vae_scale_factor, latents.shape[-1] * self.vae_scale_factor

    # ---- text --------------------------------------------------------------------------------------------

    def encode_prompts(
        self, prompts: Sequence[str], negative_prompts: Sequence[str] | None = None, *, cfg: bool
    ) -> PromptEmbeds:
        """Encode one prompt per stream, and its negative when `cfg`.

        `negative_prompts=None` means the family's default unconditional input, as in diffusers: the empty
        prompt for SD1.x/2.x; zeros for SDXL when the pipeline has `force_zeros_for_empty_prompt`.

        Prompts may use A1111's syntax (weights, `BREAK`, `<lora:...>` tags, which are dropped here: read them
        with `pipelines.prompt_syntax.extract_loras`) and run past 75 tokens (chunked); see
        `pipelines/prompt_encoder.py`. When no prompt of the call does either, diffusers' `encode_prompt`
        encodes them exactly as it always has.
        """
        prompts = list(prompts)
        negatives = None if negative_prompts is None else list(negative_prompts)
        if negatives is not None and len(negatives) != len(prompts):
            raise ValueError(f"got {len(negatives)} negative prompts for {len(prompts)} prompts")
        if needs_compel(self.pipe, prompts + (negatives if cfg and negatives else [])):
            return self._encode_with_syntax(prompts, negatives, cfg)
        if self.is_sdxl:
            cond, uncond, pooled, uncond_pooled = self.pipe.encode_prompt(
                prompt=prompts,
                device=self.device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=cfg,
                negative_prompt=negatives,
            )  # (N, 77, D1+D2) x2, (N, P) x2
            return PromptEmbeds(cond, uncond if cfg else None, pooled, uncond_pooled if cfg else None)
        cond, uncond = self.pipe.encode_prompt(prompts, self.device, 1, cfg, negative_prompt=negatives)  # (N, 77, D)
        return PromptEmbeds(cond, uncond if cfg else None)

    def _encode_with_syntax(self, prompts: list[str], negatives: list[str] | None, cfg: bool) -> PromptEmbeds:
        """`encode_prompts` through compel: every prompt and negative padded to one chunk count."""
        count = len(prompts)
        if not cfg:
            texts: list[str | None] = list(prompts)
        elif negatives is not None:
            texts = prompts + negatives
        else:
            zeros = self.is_sdxl and bool(getattr(self.pipe.config, "force_zeros_for_empty_prompt", False))
            texts = prompts + [None if zeros else ""] * count
        hidden, pooled, notes = encode_with_compel(self.pipe, self.is_sdxl, texts)
        hidden_all = torch.cat(hidden).to(self.device)  # (N or 2N, L, D)
        cond, uncond = hidden_all[:count], (hidden_all[count:] if cfg else None)
        if not self.is_sdxl:
            return PromptEmbeds(cond, uncond, notes=tuple(notes))
        pooled_all = torch.cat(pooled).to(self.device)  # (N or 2N, P)
        return PromptEmbeds(cond, uncond, pooled_all[:count], pooled_all[count:] if cfg else None, tuple(notes))

    def conditioning(
        self, embeds: PromptEmbeds, rows: Sequence[tuple[int, Half]], image_size: tuple[int, int]
    ) -> UNetConditioning:
        """Assemble the UNet's conditioning for a batch whose row r is (stream, half) = rows[r].

        `image_size` (height, width) feeds SDXL's added time ids as original and target size, crop (0, 0),
        which is what diffusers' SDXL pipeline does by default.
        """

        def pick(cond: Tensor | None, uncond: Tensor | None) -> Tensor:
            parts = []
            for stream, half in rows:
                source = cond if half == "cond" else uncond
                if source is None:
                    raise ValueError(f"batch row ({stream}, {half!r}) needs embeddings that were not encoded")
                parts.append(source[stream])
            return torch.stack(parts).to(self.device, self.dtype)

        hidden = pick(embeds.cond, embeds.uncond)  # (B, L, D)
        if not self.is_sdxl:
            return UNetConditioning(hidden, None)
        pooled = pick(embeds.cond_pooled, embeds.uncond_pooled)  # (B, P)
        size = (int(image_size[0]), int(image_size[1]))
        time_ids = self.pipe._get_add_time_ids(
            size, (0, 0), size, dtype=self.dtype, text_encoder_projection_dim=int(pooled.shape[-1])
        )  # (1, 6)
        time_ids = time_ids.to(self.device).repeat(len(rows), 1)  # (B, 6)
        return UNetConditioning(hidden, {"text_embeds": pooled, "time_ids": time_ids})

    # ---- images ------------------------------------------------------------------------------------------

    def preprocess(self, images: Sequence[PIL.Image.Image], height: int, width: int) -> Tensor:
        """PIL images -> (B, 3, height, width) in [-1, 1], resized with diffusers' `VaeImageProcessor`."""
        self.check_size(height, width)
        rgb = [image.convert("RGB") for image in images]  # SD's processor does not convert RGBA / L itself
        return self.pipe.image_processor.preprocess(rgb, height=height, width=width)  # (B, 3, H, W)

    def encode_images(self, pixels: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled latents (B, C, h, w), from the posterior *mean*.

        The mean, not a sample: inversion and img2img must be deterministic functions of the image.
        """
        self.check_size(pixels.shape[-2], pixels.shape[-1])
        with self._vae_dtype() as dtype:
            mean = self.vae.encode(pixels.to(self.device, dtype)).latent_dist.mean  # (B, C, h, w)
            latents_mean, latents_std = self._latent_stats(mean)
            shift = getattr(self.vae.config, "shift_factor", None) or 0.0
            latents = ((mean - latents_mean) / latents_std - shift) * self.vae.config.scaling_factor
        return latents.to(self.dtype)

    def decode_latents(self, latents: Tensor) -> Tensor:
        """Scaled latents (B, C, h, w) -> (B, 3, H, W) in about [-1, 1], undoing `encode_images`' scaling."""
        with self._vae_dtype() as dtype:
            latents = latents.to(self.device, dtype)
            latents_mean, latents_std = self._latent_stats(latents)
            shift = getattr(self.vae.config, "shift_factor", None) or 0.0
            unscaled = (latents / self.vae.config.scaling_factor + shift) * latents_std + latents_mean
            pixels = self.vae.decode(unscaled, return_dict=False)[0]  # (B, 3, H, W)
        return pixels

    def latents_to_pil(self, latents: Tensor) -> list[PIL.Image.Image]:
        """Scaled latents (B, C, h, w) -> PIL images: the decode every pipeline ends with."""
        return self.to_pil(self.decode_latents(latents))

    def to_pil(self, pixels: Tensor) -> list[PIL.Image.Image]:
        """(B, 3, H, W) in [-1, 1] -> PIL images (clamped, rounded to uint8 by diffusers' processor)."""
        return self.pipe.image_processor.postprocess(pixels.float(), output_type="pil")

    def _latent_stats(self, like: Tensor) -> tuple[Tensor | float, Tensor | float]:
        """Per-channel latent mean/std from the VAE config (Playground-style VAEs), else (0, 1)."""
        mean = getattr(self.vae.config, "latents_mean", None)
        std = getattr(self.vae.config, "latents_std", None)
        if mean is None or std is None:
            return 0.0, 1.0
        shape = (1, len(mean), 1, 1)
        return torch.tensor(mean).view(shape).to(like), torch.tensor(std).view(shape).to(like)

    @contextmanager
    def _vae_dtype(self) -> Iterator[torch.dtype]:
        """Run an fp16 VAE flagged `force_upcast` (SDXL's overflows in fp16) in float32 for the call, as
        diffusers' SDXL pipeline does, and put it back in `finally`."""
        vae = self.vae
        if vae.dtype != torch.float16 or not getattr(vae.config, "force_upcast", False):
            yield vae.dtype
            return
        vae.to(torch.float32)
        try:
            yield torch.float32
        finally:
            vae.to(torch.float16)
