"""How strongly the toyworld text encoder (what the UNet reads) separates each attribute. Prints figures.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/toyworld_text_tower.py [--model DIR]

For a base prompt and one variant per attribute (only that attribute's words changed), prints the L2
distance between the two 77x128 last-hidden-state sequences the UNet cross-attends to. An attribute the
text tower barely separates cannot be followed by the UNet however long it trains: this is the check to
run on a new CLIP before spending an hour on the UNet.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BASE = "a large red square at the top left, white background"
VARIANTS = {
    "position": "a large red square at the bottom right, white background",
    "shape": "a large red circle at the top left, white background",
    "colour": "a large blue square at the top left, white background",
    "pattern": "a large red striped square at the top left, white background",
    "size": "a small red square at the top left, white background",
    "background": "a large red square at the top left, black background",
}


def main() -> None:
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    from toyworld import toyworld_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=toyworld_path())
    args = p.parse_args()
    tokenizer = CLIPTokenizer.from_pretrained(str(args.model / "tokenizer"))
    encoder = CLIPTextModel.from_pretrained(str(args.model / "text_encoder")).eval()
    ids = tokenizer([BASE, *VARIANTS.values()], padding="max_length", max_length=tokenizer.model_max_length,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        states = encoder(ids)[0]  # (1 + A, 77, D)
    print(f"text tower: {args.model}; base prompt {BASE!r}")
    for i, name in enumerate(VARIANTS, start=1):
        print(f"  {name:<10} hidden-state distance {(states[0] - states[i]).norm().item():7.1f}")
    print("command: python bench/toyworld_text_tower.py")


if __name__ == "__main__":
    main()
