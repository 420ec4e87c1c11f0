"""Stage 2: the AutoencoderKL, trained to reconstruct scenes, and its latent scaling factor."""

from __future__ import annotations

import time

import numpy as np
import torch
from diffusers import AutoencoderKL

from .data import SceneSet, to_unit_range

KL_WEIGHT = 1e-6
OBJECT_WEIGHT = 4.0  # object pixels carry the attributes we measure, so errors there cost more


def train_vae(vae: AutoencoderKL, data: SceneSet, *, steps: int, batch: int, lr: float, seed: int,
              max_seconds: float, log) -> dict:
    """L1 + MSE reconstruction, up-weighted on object pixels, plus SD's tiny KL term."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.1, 1 - s / steps))
    vae.train()
    dev = next(vae.parameters()).device
    history, start, step = [], time.time(), 0
    for step in range(steps):
        idx = rng.choice(len(data), size=batch, replace=False)
        x = to_unit_range(data.images[idx]).to(dev)  # (B, 3, H, W)
        masks = torch.from_numpy(data.object_masks[idx]).float()[:, None].to(dev)  # (B, 1, H, W)
        weight = 1.0 + OBJECT_WEIGHT * masks
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample  # (B, 3, H, W)
        err = rec - x
        loss = (weight * (err.abs() + err.pow(2))).mean() + KL_WEIGHT * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log(f"vae step {step} loss {np.mean(history[-50:]):.4f} ({time.time() - start:.0f}s)")
        if time.time() - start > max_seconds:
            log(f"vae: time budget reached at step {step}")
            break
    vae.eval()
    return {"steps": step + 1, "seconds": time.time() - start, "loss_first": history[0],
            "loss_last50": float(np.mean(history[-50:])), "loss_curve": history[::25]}


@torch.no_grad()
def encode_images(vae: AutoencoderKL, images: np.ndarray, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of uint8 images (N, H, W, 3): (N, C, h, w) each."""
    dev = next(vae.parameters()).device
    means, stds = [], []
    for i in range(0, len(images), batch):
        dist = vae.encode(to_unit_range(images[i : i + batch]).to(dev)).latent_dist
        means.append(dist.mean.cpu())
        stds.append(dist.std.cpu())
    return torch.cat(means), torch.cat(stds)


def encode_all(vae: AutoencoderKL, data: SceneSet, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every scene: (N, C, h, w) each, so UNet training never runs the encoder."""
    return encode_images(vae, data.images, batch)


@torch.no_grad()
def reconstruction_psnr(vae: AutoencoderKL, data: SceneSet, n: int = 256) -> float:
    x = to_unit_range(data.images[-n:]).to(next(vae.parameters()).device)
    rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    mse = ((rec - x) / 2).pow(2).mean().item()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))
