"""Stage 1: contrastive training of toy-CLIP's text and vision towers on scenes and their captions."""

from __future__ import annotations

import time

import numpy as np
import torch
from transformers import CLIPModel, CLIPTokenizer

from ..metrics.clip_scores import to_clip_input
from .data import SceneSet


def train_clip(model: CLIPModel, tokenizer: CLIPTokenizer, data: SceneSet, *, steps: int, batch: int,
               lr: float, seed: int, max_seconds: float, log) -> dict:
    """CLIP's symmetric InfoNCE loss with its learnable temperature; returns a loss history."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100) * max(0.05, 1 - s / steps))
    model.train()
    dev = model.logit_scale.device
    history, start, step = [], time.time(), 0
    for step in range(steps):
        idx = rng.choice(len(data), size=batch, replace=False)
        # Pad to the batch's longest caption: with CLIP's causal mask, real tokens and the EOS pooled state
        # are the same as with 77-token padding, at a third of the cost.
        tokens = tokenizer(data.captions(idx, rng), padding="longest", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt")
        out = model(input_ids=tokens.input_ids.to(dev), pixel_values=to_clip_input(data.images[idx]).to(dev),
                    return_loss=True)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100.0))
        history.append(out.loss.item())
        if step % 50 == 0 or step == steps - 1:
            log(f"clip step {step} loss {np.mean(history[-50:]):.4f} ({time.time() - start:.0f}s)")
        if time.time() - start > max_seconds:
            log(f"clip: time budget reached at step {step}")
            break
    model.eval()
    return {"steps": step + 1, "seconds": time.time() - start, "loss_first": history[0],
            "loss_last50": float(np.mean(history[-50:])), "loss_curve": history[::25]}
