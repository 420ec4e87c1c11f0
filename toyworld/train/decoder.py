"""Stage 4: fine-tune the VAE decoder with the encoder frozen (as SD's ft-MSE decoder was made).

Why a separate stage: the UNet learns the encoder's latent space, so the encoder must not move once
UNet training starts; the decoder can keep improving without invalidating the UNet. The two stages
are independent given the frozen encoder (separate seeds), so they can run one after the other or, on
a machine with idle cores, side by side:

    python -m toyworld.train.decoder --model assets/toyworld --overwrite --minutes 60
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from .data import SceneSet, build_scene_set, to_unit_range
from .export import save_component_atomically
from .vae import OBJECT_WEIGHT, reconstruction_psnr


def train_decoder(vae: AutoencoderKL, data: SceneSet, *, steps: int, batch: int, lr: float, seed: int,
                  max_seconds: float, log) -> dict:
    """L1 + MSE (object pixels up-weighted) on decodes of posterior samples; only decoder weights move."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    vae.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    dev = next(vae.parameters()).device
    start = time.time()
    history: list[float] = []
    step = 0
    for step in range(steps):
        frac = max(step / steps, (time.time() - start) / max_seconds)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))
        idx = rng.choice(len(data), size=batch, replace=False)
        x = to_unit_range(data.images[idx]).to(dev)  # (B, 3, H, W)
        masks = torch.from_numpy(data.object_masks[idx]).float()[:, None].to(dev)  # (B, 1, H, W)
        weight = 1.0 + OBJECT_WEIGHT * masks
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(generator=gen)  # (B, 4, h, w)
        err = vae.decode(z).sample - x
        loss = (weight * (err.abs() + err.pow(2))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        history.append(loss.item())
        if step % 50 == 0:
            log(f"decoder step {step} loss {np.mean(history[-50:]):.4f} ({time.time() - start:.0f}s)")
        if time.time() - start > max_seconds:
            log(f"decoder: time budget reached at step {step}")
            break
    vae.requires_grad_(False).eval()
    return {"steps": step + 1, "seconds": time.time() - start, "loss_first": history[0],
            "loss_last50": float(np.mean(history[-50:])), "loss_curve": history[::25]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("assets/toyworld"))
    p.add_argument("--overwrite", action="store_true", help="required: this replaces the model's vae/")
    p.add_argument("--seed", type=int, default=0, help="the trainer's --seed (same scenes)")
    p.add_argument("--scenes", type=int, default=16000)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--minutes", type=float, default=float("inf"))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if not args.overwrite:
        raise SystemExit(f"this replaces {args.model / 'vae'}; pass --overwrite to proceed")
    if args.threads:
        torch.set_num_threads(args.threads)
    log_file = (args.model / "decoder_log.txt").open("w")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    t0, c0 = time.time(), time.process_time()
    vae = AutoencoderKL.from_pretrained(str(args.model / "vae"), local_files_only=True, use_safetensors=True)
    vae = vae.to(torch.device(args.device))
    data = build_scene_set(args.scenes, args.seed)
    before = reconstruction_psnr(vae, data)
    log(f"rendered {len(data)} scenes; reconstruction PSNR before {before:.2f} dB")
    report = train_decoder(vae, data, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed + 4,
                           max_seconds=args.minutes * 60, log=log)
    report.update(psnr_before_db=before, psnr_after_db=reconstruction_psnr(vae, data),
                  total_seconds=time.time() - t0, total_cpu_seconds=time.process_time() - c0,
                  args={k: str(v) for k, v in vars(args).items()})
    save_component_atomically(args.model, "vae", vae)
    (args.model / "decoder_report.json").write_text(json.dumps(report, indent=1))
    log(f"reconstruction PSNR after {report['psnr_after_db']:.2f} dB; saved {args.model / 'vae'}")
    log_file.close()
    return report


if __name__ == "__main__":
    main()
