"""How much of each held-out concept survives the bundled VAE alone: a ceiling for every tuning method.

Why: a tuned model draws latents that the VAE decodes. The tuning fidelity score (`bench/tuning_fidelity.py`,
`toyworld.metrics.concepts.concept_present`) is read from decoded images, so if the VAE's own round trip of
a perfect render already fails the score, a method that learns the concept perfectly still cannot pass it.
This measures, with no diffusion at all, the score of (a) the renders themselves, (b) their VAE round trip
(encode, posterior mean, decode), on the concept's bundled training images and on fresh renders per size,
and prints what the detector reads in the round trips that fail.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/concept_vae_ceiling.py [--fresh N] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = ("small", "", "large")
PLACES = ("in the center", "on the left", "on the right", "at the top", "at the bottom")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fresh", type=int, default=30, help="fresh renders per concept and size")
    parser.add_argument("--model", type=Path, default=None, help="toyworld model folder (default: the bundled one)")
    args = parser.parse_args()
    import numpy as np
    import torch
    from diffusers import AutoencoderKL
    from PIL import Image

    from toyworld import toyworld_path
    from toyworld.concepts import HELD_OUT_CONCEPTS
    from toyworld.detector import detect
    from toyworld.metrics.concepts import concept_present
    from toyworld.train.vae import encode_images
    from toyworld.vocab import ALL_PATTERNS, ALL_SHAPES
    from toyworld.world import Background, SceneSpec, make_object, render

    torch.set_num_threads(1)
    model = args.model or toyworld_path()
    vae = AutoencoderKL.from_pretrained(model / "vae", local_files_only=True).eval()

    def round_trip(images: np.ndarray) -> np.ndarray:
        mean, _ = encode_images(vae, images)  # (N, C, h, w)
        with torch.no_grad():
            decoded = vae.decode(mean).sample.clamp(-1, 1)  # (N, 3, H, W)
        return ((decoded + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()

    print(f"model {model}; score: toyworld.metrics.concepts.concept_present (the tuning fidelity score)")
    print(f"{'concept':<16} {'images':<22} {'renders':>8} {'VAE round trip':>15}")
    for concept in HELD_OUT_CONCEPTS:

        def score(batch: np.ndarray, c=concept) -> list[bool]:
            return [bool(concept_present(im, shape=c.shape, color=c.color, pattern=c.pattern, color2=c.color2))
                    for im in batch]

        files = sorted(p for p in (model / "concepts" / concept.name).glob("reference_*.png") if "mask" not in p.name)
        training = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])  # (5, H, W, 3)
        trip = round_trip(training)
        print(f"{concept.name:<16} {'training references':<22} {np.mean(score(training)):>8.0%} "
              f"{np.mean(score(trip)):>15.0%}")
        misread: Counter[str] = Counter()
        rng = np.random.default_rng(0)
        for size in SIZES:
            renders = np.stack([
                render(SceneSpec((make_object(concept.shape, concept.color, concept.pattern, size, PLACES[i % 5], rng,
                                              concept.color2),),
                                 Background("plain", ("gray", "white", "beige")[i % 3]))).image
                for i in range(args.fresh)
            ])
            trip = round_trip(renders)
            hits = score(trip)
            label = f"fresh, {size or 'medium'}"
            print(f"{'':<16} {label:<22} {np.mean(score(renders)):>8.0%} {np.mean(hits):>15.0%}")
            for image, hit in zip(trip, hits, strict=True):
                if not hit:
                    found = detect(image, shapes=ALL_SHAPES, patterns=ALL_PATTERNS).objects
                    misread[f"{found[0].pattern} {found[0].shape}" if found else "nothing"] += 1
        print(f"{'':<16} failed round trips read as: {dict(misread.most_common(4))}")


if __name__ == "__main__":
    main()
