"""Reproducible trainer for the bundled toyworld model: CLIP -> VAE -> UNet, then the diffusers layout.

    python -m toyworld.train --out assets/toyworld --overwrite

Stages: CLIP (contrastive) -> VAE (joint) -> conditioning text tower (CLIP's text tower taught to carry
every caption attribute, see text_tower.py) -> UNet (on the frozen encoder's latents and the frozen
text tower; clip/ keeps the contrastive CLIP) -> VAE decoder fine-tune (encoder frozen, so the UNet's latent
space is unchanged; see decoder.py). The bundled model then takes one more stage, run on the finished
model: `python -m toyworld.train.pairs --base OUT --out FINAL` fine-tunes the UNet on appearance
pairs with joint self-attention, so that self-attention carries object appearance (see pairs.py).

The text tower stays frozen during the UNet stage by default (--text-lr 0). Fine-tuning it with the UNet's
loss (--text-lr 1e-4) shrank the position signal the text stage had put in it (hidden-state distance
86.7 -> 14.3) before the UNet had learned to read it, and the model then placed objects where the starting
noise suggested (position 11%, chance). With the tower frozen, the first-step x0 prediction already follows
the position words after ~500 UNet steps.

Why this shape: every stage is seeded from --seed (numpy and torch Generators, no global seeding of
library code) and runs a fixed number of steps; an optional per-stage minute budget caps wall time on
slow machines (the report records the steps actually run). A partial model is written after the VAE
stage and refreshed every few minutes during UNet training, with training_report.json beside it.
The trainer refuses to write into a folder that already holds a model unless --overwrite is given.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from transformers import CLIPModel

from .clip import train_clip
from .data import build_scene_set
from .decoder import train_decoder
from .export import save_component_atomically, save_pipeline, split_clip
from .models import build_clip, build_unet, build_vae
from .run_log import RunLog, args_record
from .text_tower import train_text_tower
from .tokenizer import write_tokenizer_files
from .unet import train_unet
from .vae import encode_all, reconstruction_psnr, train_vae


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m toyworld.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("assets/toyworld"))
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing model in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenes", type=int, default=24000)
    p.add_argument("--clip-steps", type=int, default=700)
    p.add_argument("--clip-batch", type=int, default=96)
    p.add_argument("--vae-steps", type=int, default=1400)
    p.add_argument("--vae-batch", type=int, default=24)
    p.add_argument("--unet-steps", type=int, default=6000)
    p.add_argument("--unet-batch", type=int, default=32)
    p.add_argument("--unet-lr", type=float, default=1e-3)
    p.add_argument("--text-steps", type=int, default=400, help="steps of the conditioning text-tower stage")
    p.add_argument("--text-batch", type=int, default=128)
    p.add_argument("--text-lr", type=float, default=0.0,
                   help="learning rate of the text encoder, fine-tuned with the UNet's loss (0: frozen)")
    p.add_argument("--decoder-steps", type=int, default=800)
    p.add_argument("--decoder-minutes", type=float, default=float("inf"))
    p.add_argument("--clip-minutes", type=float, default=float("inf"))
    p.add_argument("--vae-minutes", type=float, default=float("inf"))
    p.add_argument("--unet-minutes", type=float, default=float("inf"))
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default); 1 is much faster on a busy shared 2-core machine")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resume-after-vae", type=Path, default=None, metavar="DIR",
                   help="take CLIP and the VAE from an earlier run of the same --seed/--scenes that stopped after "
                        "its VAE stage (its decoder not yet fine-tuned) and train only the UNet and decoder")
    return p.parse_args(argv)


def load_stages(run: Path, args: argparse.Namespace) -> tuple[CLIPModel, AutoencoderKL, dict]:
    """CLIP, the VAE and their report sections from an interrupted run, checked to be a valid resume point."""
    report_path = run / "training_report.json"
    if not report_path.exists():
        raise SystemExit(f"{run} has no training_report.json: not a trainer output folder")
    earlier = json.loads(report_path.read_text())
    if "vae" not in earlier or "scaling_factor" not in earlier["vae"]:
        raise SystemExit(f"{run} did not finish its VAE stage; nothing to resume from")
    if "decoder" in earlier:
        raise SystemExit(f"{run} already fine-tuned its decoder; its VAE is no longer the VAE stage's output")
    for key in ("seed", "scenes", "clip_steps", "clip_batch", "vae_steps", "vae_batch"):
        if earlier["args"].get(key) != getattr(args, key):
            raise SystemExit(f"{run} was trained with {key}={earlier['args'].get(key)}, not {getattr(args, key)}")
    clip = CLIPModel.from_pretrained(str(run / "clip"))
    vae = AutoencoderKL.from_pretrained(str(run / "vae"))
    return clip, vae, {"clip": earlier["clip"], "vae": earlier["vae"], "resumed_after_vae_from": str(run)}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out: Path = args.out
    if (out / "model_index.json").exists() and not args.overwrite:
        raise SystemExit(f"{out} already holds a model; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = RunLog(out / "training_log.txt")

    report: dict = {"args": args_record(args),
                    "torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads(),
                    "status": "running"}

    def write_report() -> None:
        report["total_seconds"] = time.time() - t0
        report["total_cpu_seconds"] = time.process_time() - c0  # wall time overstates it on a shared machine
        (out / "training_report.json").write_text(json.dumps(report, indent=1, default=str))

    t0, c0 = time.time(), time.process_time()
    tokenizer = write_tokenizer_files(out / "tokenizer")
    data = build_scene_set(args.scenes, args.seed)
    report["scenes"] = {"count": len(data), "seconds": time.time() - t0}
    log(f"rendered {len(data)} scenes in {time.time() - t0:.0f}s")

    # Module init draws from torch's global RNG; seed it inside a fork so the caller's RNG state is untouched.
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        clip = build_clip(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
        vae = build_vae()
        unet = build_unet()
    device = torch.device(args.device)
    clip, vae, unet = clip.to(device), vae.to(device), unet.to(device)
    report["device"] = str(device)

    if args.resume_after_vae is not None:
        clip, vae, earlier = load_stages(args.resume_after_vae, args)
        clip, vae = clip.to(device).eval(), vae.to(device).eval()
        report.update(earlier)
        log(f"CLIP and VAE taken from {args.resume_after_vae}")
        mean, std = encode_all(vae, data)
        scaling = float(vae.config.scaling_factor)
    else:
        report["clip"] = train_clip(clip, tokenizer, data, steps=args.clip_steps, batch=args.clip_batch, lr=5e-4,
                                    seed=args.seed + 1, max_seconds=args.clip_minutes * 60, log=log)
        write_report()
        report["vae"] = train_vae(vae, data, steps=args.vae_steps, batch=args.vae_batch, lr=1e-3,
                                  seed=args.seed + 2, max_seconds=args.vae_minutes * 60, log=log)
        mean, std = encode_all(vae, data)
        scaling = float(1.0 / (mean.std().item() + 1e-6))  # SD's convention: unit-variance latents after scaling
        vae.register_to_config(scaling_factor=scaling)
        report["vae"].update(scaling_factor=scaling, psnr_db=reconstruction_psnr(vae, data))
        log(f"vae scaling factor {scaling:.4f}, reconstruction PSNR {report['vae']['psnr_db']:.2f} dB")
    save_pipeline(out, clip=clip, tokenizer=tokenizer, vae=vae, unet=unet)
    write_report()

    text_encoder, _ = split_clip(clip)
    text_encoder = text_encoder.to(device)
    if args.text_steps > 0:
        report["text_tower"] = train_text_tower(text_encoder, tokenizer, data, steps=args.text_steps,
                                                batch=args.text_batch, lr=1e-3, seed=args.seed + 5,
                                                max_seconds=float("inf"), log=log)
        save_component_atomically(out, "text_encoder", text_encoder)
        write_report()

    def save_trained(ema_unet, ema_text) -> None:
        save_component_atomically(out, "unet", ema_unet)
        if args.text_lr > 0:  # a frozen tower is already on disk
            save_component_atomically(out, "text_encoder", ema_text)

    def checkpoint(ema_unet, ema_text, unet_report: dict) -> None:
        save_trained(ema_unet, ema_text)
        report["unet"] = unet_report
        write_report()
        log(f"checkpoint at unet step {unet_report['steps']}")

    ema, ema_text, report["unet"] = train_unet(
        unet, text_encoder, tokenizer, data, mean, std, scaling, steps=args.unet_steps, batch=args.unet_batch,
        lr=args.unet_lr, seed=args.seed + 3, max_seconds=args.unet_minutes * 60, log=log, checkpoint=checkpoint,
        text_lr=args.text_lr,
    )
    save_trained(ema, ema_text)
    write_report()
    if args.decoder_steps > 0:
        report["decoder"] = train_decoder(vae, data, steps=args.decoder_steps, batch=args.vae_batch, lr=1e-3,
                                          seed=args.seed + 4, max_seconds=args.decoder_minutes * 60, log=log)
        report["decoder"]["psnr_db"] = reconstruction_psnr(vae, data)
        log(f"decoder fine-tuned: reconstruction PSNR {report['decoder']['psnr_db']:.2f} dB")
        save_component_atomically(out, "vae", vae)
    report["status"] = "done"
    write_report()
    log(f"done in {time.time() - t0:.0f}s")
    log.close()
    return report


if __name__ == "__main__":
    main()
