"""The denoising loss every recipe trains with: noise a latent, predict, compare (optionally inside a mask).

Why one function: the three recipes differ only in which parameters learn and in extra terms (ClassDiffusion's
semantic preservation); the diffusion loss, its target for each prediction type and its masking are shared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import Tensor

from pipelines.backbone import Backbone, UNetConditioning


def noise_scheduler(backbone: Backbone) -> DDPMScheduler:
    """The model's own training schedule (betas, prediction type) as a DDPM scheduler, for `add_noise`."""
    return DDPMScheduler.from_config(backbone.scheduler_config)


def denoising_loss(
    backbone: Backbone,
    scheduler: DDPMScheduler,
    latents: Tensor,
    conditioning: UNetConditioning,
    noise: Tensor,
    timesteps: Tensor,
    masks: Tensor | None = None,
) -> Tensor:
    """Per-example MSE between the UNet's prediction and its target; shape (B,).

    latents, noise: (B, C, h, w); timesteps: (B,) ints; masks: (B, 1, h, w) weights (the mean is taken over the
    mask, as ClassDiffusion's masked loss, so a small object weighs as much as a large one).
    """
    noisy = scheduler.add_noise(latents, noise, timesteps)  # (B, C, h, w)
    prediction = backbone.unet(
        noisy,
        timesteps,
        encoder_hidden_states=conditioning.encoder_hidden_states,
        added_cond_kwargs=conditioning.added_cond_kwargs,
        return_dict=False,
    )[0]  # (B, C, h, w)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    elif kind == "sample":
        target = latents
    else:
        raise ValueError(f"unknown prediction type {kind!r}")
    error = F.mse_loss(prediction.float(), target.float(), reduction="none")  # (B, C, h, w)
    if masks is None:
        return error.mean(dim=(1, 2, 3))
    weight = masks.float().expand_as(error)  # (B, C, h, w)
    return (error * weight).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3)).clamp_min(1e-6)


def draw_training_noise(
    shape: torch.Size, num_train_timesteps: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(noise (B, C, h, w), timesteps (B,)) drawn from `generator` on the CPU, so every device draws the same."""
    noise = torch.randn(shape, generator=generator)  # (B, C, h, w)
    timesteps = torch.randint(0, num_train_timesteps, (shape[0],), generator=generator)  # (B,)
    return noise, timesteps
