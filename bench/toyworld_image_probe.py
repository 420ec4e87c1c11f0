"""What do the toyworld image encoder's features carry? A linear probe per attribute, per feature form.

Why: an IP-Adapter sees an image only through its image encoder. The base form reads the projected image
embedding (one vector), the Plus and Full-face forms the penultimate hidden states (one token per 8x8
patch plus the class token). Before training a toyworld adapter, measure which form holds the colour,
pattern, shape, size and position of the object: an attribute missing from the features cannot be
carried by any adapter.

Data: single-object scenes drawn by the world's training sampler (held-out shapes and patterns
excluded), rendered at 64 px; train and test scenes from disjoint seeds. Probe: ridge regression on
standardised features to one-hot targets (closed form, one lambda for all), accuracy = argmax on the
test scenes. Chance is 1 / number of values.

Run from the repository root:  HF_HUB_OFFLINE=1 .venv/bin/python bench/toyworld_image_probe.py
Prints one table; not a test (nothing is asserted).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

from toyworld.world import render, sample_scene

TOYWORLD = Path(__file__).resolve().parents[1] / "assets" / "toyworld"
ATTRIBUTES = ("color", "pattern", "shape", "size", "position")


def scenes(n: int, seed: int) -> tuple[list[np.ndarray], dict[str, list[str]]]:
    rng = np.random.default_rng(seed)
    images, labels = [], {a: [] for a in ATTRIBUTES}
    for _ in range(n):
        spec = sample_scene(rng, n_objects=1)
        images.append(render(spec).image)
        (obj,) = spec.objects
        for attribute in ATTRIBUTES:
            labels[attribute].append(str(getattr(obj, attribute)))
    return images, labels


@torch.no_grad()
def features(images: list[np.ndarray], encoder_dir: Path, batch: int = 256) -> dict[str, np.ndarray]:
    encoder = CLIPVisionModelWithProjection.from_pretrained(encoder_dir, use_safetensors=True).eval()
    extractor = CLIPImageProcessorPil.from_pretrained(TOYWORLD / "feature_extractor")
    forms: dict[str, list[np.ndarray]] = {"image_embeds (base)": [], "penultimate CLS": [],
                                          "penultimate patch mean": [], "penultimate all tokens (Plus/Full)": []}  # fmt: skip
    for start in range(0, len(images), batch):
        pixels = extractor(images=images[start : start + batch], return_tensors="pt").pixel_values  # (B, 3, 64, 64)
        out = encoder(pixels, output_hidden_states=True)
        hidden = out.hidden_states[-2]  # (B, 1 + patches, C)
        forms["image_embeds (base)"].append(out.image_embeds.numpy())  # (B, P)
        forms["penultimate CLS"].append(hidden[:, 0].numpy())  # (B, C)
        forms["penultimate patch mean"].append(hidden[:, 1:].mean(1).numpy())  # (B, C)
        forms["penultimate all tokens (Plus/Full)"].append(hidden.flatten(1).numpy())  # (B, (1 + patches) * C)
    return {name: np.concatenate(parts) for name, parts in forms.items()}


def probe(train_x: np.ndarray, train_y: list[str], test_x: np.ndarray, test_y: list[str], lam: float) -> float:
    """Ridge to one-hot targets; the test accuracy of its argmax."""
    values = sorted(set(train_y))
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a = (train_x - mean) / std  # (N, F)
    b = (test_x - mean) / std
    onehot = np.eye(len(values))[[values.index(y) for y in train_y]]  # (N, K)
    if a.shape[1] <= a.shape[0]:
        w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ onehot)  # (F, K)
    else:  # the dual form: fewer samples than features
        w = a.T @ np.linalg.solve(a @ a.T + lam * np.eye(a.shape[0]), onehot)
    predicted = [values[i] for i in (b @ w).argmax(1)]
    return float(np.mean([p == y for p, y in zip(predicted, test_y, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--ridge", type=float, default=10.0)
    parser.add_argument("--encoder", type=Path, default=TOYWORLD / "image_encoder", help="a CLIP vision tower folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/toyworld_image_probe.py " + " ".join(sys.argv[1:])
    print(f"reproduce with: {command.strip()}")
    train_images, train_labels = scenes(args.train, seed=0)
    test_images, test_labels = scenes(args.test, seed=1)
    train_f, test_f = features(train_images, args.encoder), features(test_images, args.encoder)
    chance = "  ".join(f"{a} {1 / len(set(train_labels[a])):.2f}" for a in ATTRIBUTES)
    print(f"{args.train} train / {args.test} test single-object scenes; chance: {chance}")
    print(f"| features | dims | {' | '.join(ATTRIBUTES)} |")
    print("|---|---|" + "---|" * len(ATTRIBUTES))
    for name in train_f:
        accuracies = [
            probe(train_f[name], train_labels[a], test_f[name], test_labels[a], args.ridge) for a in ATTRIBUTES
        ]
        cells = " | ".join(f"{x:.1%}" for x in accuracies)
        print(f"| {name} | {train_f[name].shape[1]} | {cells} |")


if __name__ == "__main__":
    main()
