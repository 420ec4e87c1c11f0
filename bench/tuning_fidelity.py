"""Toyworld fidelity of the tuning recipes: does "a sks <class> in the center, white background" draw the concept?

For each held-out concept (5 reference renders with their masks, captioned in the world's grammar with the
identifier before the class word) and each recipe, train, then generate `--samples` images of the identifier
prompt and count how many the toyworld detector reads as the concept (colour, pattern, shape). The untuned
model is measured with the same seeds. For residuals, also the background change vs the untuned image with and
without LAG (mean absolute pixel difference over the whole image, 0-255).

    nice -n 10 python bench/tuning_fidelity.py --concepts twotone_star --recipes lora --steps 150 \
        --out /tmp/fidelity.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from toyworld.captions import background_phrase
from toyworld.concepts import HELD_OUT_CONCEPTS, reference_scenes

PROMPT = "a {token} {cls} in the center, white background"


def write_folder(concept_name: str, token: str, root: Path) -> tuple[Path, str]:
    """The concept's 5 references + masks + world-grammar captions (`{token}` before the class word)."""
    from PIL import Image

    from toyworld import toyworld_path

    concept = next(c for c in HELD_OUT_CONCEPTS if c.name == concept_name)
    source = toyworld_path() / "concepts" / concept_name
    info = json.loads((source / "concept.json").read_text())
    scenes = reference_scenes(concept, 1234 + 10 * [c.name for c in HELD_OUT_CONCEPTS].index(concept_name))
    folder = root / concept_name
    folder.mkdir(parents=True)
    for entry, scene in zip([r for r in info["renders"] if r["kind"] == "reference"], scenes):
        stem = Path(entry["image"]).stem
        Image.open(source / entry["image"]).save(folder / f"{stem}.png")
        Image.open(source / entry["mask"]).save(folder / f"{stem}_mask.png")
        size = "" if entry["size"] == "medium" else f"{entry['size']} "
        caption = f"a {size}{{token}} {{cls}} {entry['position']}, {background_phrase(scene.background)}"
        (folder / f"{stem}.txt").write_text(caption)
    return folder, concept.shape


def present(image, concept_name: str) -> bool:
    from toyworld.metrics.concepts import concept_present

    c = next(c for c in HELD_OUT_CONCEPTS if c.name == concept_name)
    return concept_present(image, shape=c.shape, color=c.color, pattern=c.pattern, color2=c.color2)


def sample(backbone, prompt: str, seeds: range, controls=()) -> list:
    from pipelines.text_to_image import generate

    return [
        generate(backbone, prompt, generator=torch.Generator().manual_seed(s), controls=controls).images[0]
        for s in seeds
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concepts", nargs="+", default=[c.name for c in HELD_OUT_CONCEPTS])
    parser.add_argument("--recipes", nargs="+", default=["lora", "classdiffusion", "residuals"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--token", default="sks")
    parser.add_argument("--prior", type=int, default=0, help="LoRA: prior preservation with N class images")
    parser.add_argument("--out", type=Path, default=Path("tuning_fidelity.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    from pipelines.backbone import Backbone
    from studio.model_cache import ModelCache
    from studio.training.job import TrainRequest, run_training
    from toyworld import load_toyworld_pipeline

    results = []
    seeds = range(1000, 1000 + args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        for concept_name in args.concepts:
            folder, cls = write_folder(concept_name, args.token, Path(tmp))
            prompt = PROMPT.format(token=args.token, cls=cls)
            base = Backbone.from_pipeline(load_toyworld_pipeline())
            base_images = sample(base, prompt, seeds)
            base_rate = float(np.mean([present(im, concept_name) for im in base_images]))
            for recipe in args.recipes:
                started = time.monotonic()
                request = TrainRequest(
                    recipe=recipe,
                    images=folder,
                    token=args.token,
                    cls=cls,
                    out=Path(tmp) / f"{concept_name}-{recipe}",
                    steps=args.steps,
                    learning_rate=args.lr,
                    batch_size=args.batch_size,
                    options={"prior_preservation": True, "class_images": args.prior}
                    if args.prior and recipe == "lora"
                    else {},
                )
                models = ModelCache()
                report = run_training(request, models)
                tuned = Backbone.from_pipeline(models.get("toyworld"))  # the trained pipeline, tuning applied
                images = sample(tuned, prompt, seeds)
                row = {
                    "concept": concept_name,
                    "recipe": recipe,
                    "steps": args.steps,
                    "prior": args.prior if recipe == "lora" else 0,
                    "rate": float(np.mean([present(im, concept_name) for im in images])),
                    "untuned_rate": base_rate,
                    "samples": args.samples,
                    "parameters": report["parameters"],
                    "parameter_fraction": report["parameter_fraction"],
                    "train_seconds": report["train_seconds"],
                    "final_loss": report["loss_curve"][-1],
                    "seconds": time.monotonic() - started,
                }
                if recipe == "residuals":
                    row |= lag_background(tuned, prompt, seeds, base_images, args.token, cls)
                results.append(row)
                print(json.dumps(row), flush=True)
                args.out.write_text(json.dumps(results, indent=2))


def lag_background(tuned, prompt: str, seeds: range, base_images: list, token: str, cls: str) -> dict:
    """Mean |tuned - untuned| pixel difference (0-255) with LAG and without, and LAG's concept rate."""
    from pipelines.tuning.lag import lag_residuals

    plain = sample(tuned, prompt, seeds)
    with lag_residuals(tuned, prompt, token, cls) as controls:
        lagged = sample(tuned, prompt, seeds, controls)

    def diff(images: list) -> float:
        return float(
            np.mean(
                [
                    np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean()
                    for a, b in zip(images, base_images)
                ]
            )
        )

    return {"background_diff_no_lag": diff(plain), "background_diff_lag": diff(lagged)}


if __name__ == "__main__":
    main()
