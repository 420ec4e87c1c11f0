"""Stage 2b: the conditioning text tower, taught to carry every attribute a caption says.

Why: contrastive CLIP learns only what tells a batch's images apart through pooled embeddings, and on
toyworld that is colour, size and background. Captions that differ only in shape or position words get
almost the same hidden states (bench/toyworld_text_tower.py: distance 4 against 109 for colour), and a UNet
cannot follow what its conditioning does not carry: a 2,200-step UNet on that tower reached colour 94% but
shape 9% and position 3%. The grammar gives each caption's attributes for free, so the tower that conditions
the UNet starts from CLIP's text tower and is trained to predict them, per object slot, from the states
the UNet reads: the mean of the final states from EOS on (the padding states, which in CLIP's causal
model see the whole caption). The prediction heads are thrown away; clip/ keeps the contrastive tower
for toy CLIP-T, so that score does not come from a tower trained on its own labels.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer

from ..captions import parse_caption
from ..vocab import ALL_PATTERNS, ALL_SHAPES, BACKGROUND_COLORS, BACKGROUND_KINDS, COLORS, POSITIONS
from .data import SceneSet

MAX_OBJECTS = 3
SIZE_WORDS = ("small", "medium", "large")
IGNORE = -100

# attribute -> class names; shape has an extra last class "no such object", position one for "not said".
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": (*ALL_SHAPES, "<none>"),
    "color": tuple(COLORS),
    "pattern": tuple(ALL_PATTERNS),
    "size": SIZE_WORDS,
    "position": (*POSITIONS, "<unsaid>"),
}
BACKGROUND_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "kind": (*BACKGROUND_KINDS, "<unsaid>"),
    "color": tuple(BACKGROUND_COLORS),
    "color2": tuple(BACKGROUND_COLORS),
}


def background_labels(phrase: str | None) -> torch.Tensor:
    """(len(BACKGROUND_ATTRIBUTES),) class indices for a background phrase of the grammar (or none said)."""
    labels = torch.full((len(BACKGROUND_ATTRIBUTES),), IGNORE, dtype=torch.long)
    kinds, colors = BACKGROUND_ATTRIBUTES["kind"], BACKGROUND_ATTRIBUTES["color"]
    if phrase is None:
        labels[0] = kinds.index("<unsaid>")
        return labels
    words = phrase.split()
    if "gradient" in words:  # "a <c> to <c2> gradient background"
        labels[0], labels[1], labels[2] = kinds.index("gradient"), colors.index(words[1]), colors.index(words[3])
    elif words[0] == "noisy":  # "noisy <c> background"
        labels[0], labels[1] = kinds.index("noise"), colors.index(words[1])
    else:  # "<c> background"
        labels[0], labels[1] = kinds.index("plain"), colors.index(words[0])
    return labels


def caption_labels(text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Class indices of what the caption says, IGNORE where nothing applies: per object slot
    (MAX_OBJECTS, len(ATTRIBUTES)), and for the background (len(BACKGROUND_ATTRIBUTES),)."""
    objects, background = parse_caption(text)
    labels = torch.full((MAX_OBJECTS, len(ATTRIBUTES)), IGNORE, dtype=torch.long)
    for slot in range(MAX_OBJECTS):
        if slot >= len(objects):
            labels[slot, 0] = ATTRIBUTES["shape"].index("<none>")
            continue
        q = objects[slot]
        position = q.position if q.position is not None else "<unsaid>"
        for a, (name, value) in enumerate(zip(ATTRIBUTES, (q.shape, q.color, q.pattern, q.size, position),
                                              strict=True)):
            labels[slot, a] = ATTRIBUTES[name].index(value)
    return labels, background_labels(background)


def conditioning_summary(hidden: torch.Tensor, input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """(B, D) mean of the final states from the first EOS on: the states every cross-attention query sees."""
    is_eos = input_ids == eos_token_id  # (B, L)
    from_eos = is_eos.int().cumsum(dim=1) > 0  # (B, L) true from the first EOS on
    weights = from_eos.float() / from_eos.sum(dim=1, keepdim=True)  # (B, L)
    return torch.einsum("bl,bld->bd", weights, hidden)  # (B, D)


class AttributeHeads(nn.Module):
    """One linear classifier per (object slot, attribute) and per background attribute; training scaffolding
    only, never saved."""

    def __init__(self, width: int) -> None:
        super().__init__()
        rows = [ATTRIBUTES] * MAX_OBJECTS + [BACKGROUND_ATTRIBUTES]
        self.heads = nn.ModuleList(
            nn.ModuleList(nn.Linear(width, len(classes)) for classes in row.values()) for row in rows
        )

    def loss(self, summary: torch.Tensor, objects: torch.Tensor,
             background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over every labelled (row, attribute), and the share of those predicted right.

        objects: (B, MAX_OBJECTS, len(ATTRIBUTES)); background: (B, len(BACKGROUND_ATTRIBUTES))."""
        rows = [objects[:, slot] for slot in range(MAX_OBJECTS)] + [background]  # each (B, A_row)
        losses, right, counted = [], 0, 0
        for row_labels, row_heads in zip(rows, self.heads, strict=True):
            for a, head in enumerate(row_heads):
                target = row_labels[:, a]  # (B,)
                if (target == IGNORE).all():
                    continue
                logits = head(summary)  # (B, classes)
                losses.append(nn.functional.cross_entropy(logits, target, ignore_index=IGNORE))
                keep = target != IGNORE
                right += (logits.argmax(-1)[keep] == target[keep]).sum().item()
                counted += keep.sum().item()
        return torch.stack(losses).mean(), torch.tensor(right / max(counted, 1))


def train_text_tower(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, data: SceneSet, *, steps: int,
                     batch: int, lr: float, seed: int, max_seconds: float,
                     log: Callable[[str], None]) -> dict:
    """Trains `text_encoder` in place to predict each caption's attributes; returns a report."""
    rng = np.random.default_rng(seed)
    dev = next(text_encoder.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = AttributeHeads(text_encoder.config.hidden_size).to(dev)
    params = list(text_encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.05, 1 - s / steps))
    text_encoder.train().requires_grad_(True)
    history: list[float] = []
    accuracy: list[float] = []
    start, step = time.time(), 0
    for step in range(steps):
        idx = rng.choice(len(data), size=batch, replace=False)
        captions = data.captions(idx, rng)
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(dev)
        labels = [caption_labels(c) for c in captions]
        objects = torch.stack([o for o, _ in labels]).to(dev)  # (B, MAX_OBJECTS, A)
        background = torch.stack([b for _, b in labels]).to(dev)  # (B, A_background)
        hidden = text_encoder(ids)[0]  # (B, 77, D)
        loss, acc = heads.loss(conditioning_summary(hidden, ids, tokenizer.eos_token_id), objects, background)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        history.append(loss.item())
        accuracy.append(acc.item())
        if step % 50 == 0 or step == steps - 1:
            log(f"text tower step {step} loss {np.mean(history[-50:]):.4f} attribute accuracy "
                f"{np.mean(accuracy[-50:]):.3f} ({time.time() - start:.0f}s)")
        if time.time() - start > max_seconds:
            log(f"text tower: time budget reached at step {step}")
            break
    text_encoder.eval().requires_grad_(False)
    return {"steps": step + 1, "seconds": time.time() - start, "loss_first": history[0],
            "loss_last50": float(np.mean(history[-50:])), "attribute_accuracy_last50": float(np.mean(accuracy[-50:])),
            "loss_curve": history[::25]}
