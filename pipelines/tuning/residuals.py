"""Personalized residuals (Ham et al., CVPR 2024, arXiv 2405.12978): a low-rank residual on the output projection
(`proj_out`) of every transformer block, rank 0.05 x its channels, trained with the plain diffusion loss and no
prior preservation.

Why peft with a rank pattern: the residual W' = W + A B is a LoRA whose rank differs per block; peft's
`rank_pattern` states it per module, so no residual layer is written by hand, and the file is diffusers' LoRA
format (stock `load_lora_weights` reads per-module ranks from the shapes): applied everywhere it is just a LoRA.
The residual starts at zero (peft's default init), so an untrained file is the base model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig

from pipelines.backbone import Backbone
from pipelines.tuning.lora import ADAPTER, save_adapters
from pipelines.tuning.recipe import Recipe, freeze, seeded
from pipelines.tuning.settings import RESIDUALS


def block_proj_outs(unet: torch.nn.Module) -> dict[str, int]:
    """Module path -> channels of each transformer block's (Transformer2DModel's) `proj_out`."""
    found = {}
    for name, module in unet.named_modules():
        proj = getattr(module, "proj_out", None)
        if proj is not None and hasattr(module, "transformer_blocks"):
            channels = proj.out_channels if isinstance(proj, torch.nn.Conv2d) else proj.out_features
            found[f"{name}.proj_out"] = int(channels)
    return found


def residual_ranks(unet: torch.nn.Module, fraction: float) -> dict[str, int]:
    return {name: max(1, round(fraction * channels)) for name, channels in block_proj_outs(unet).items()}


@dataclass
class ResidualsRecipe(Recipe):
    rank_fraction: float = RESIDUALS.rank_fraction
    name: str = "residuals"

    def prepare(self, backbone: Backbone, seed: int) -> None:
        freeze(backbone)
        ranks = residual_ranks(backbone.unet, self.rank_fraction)
        if not ranks:
            raise ValueError("this UNet has no transformer blocks (no proj_out) to add residuals to")
        first = next(iter(ranks.values()))
        config = LoraConfig(
            r=first,
            lora_alpha=first,
            target_modules=list(ranks),
            rank_pattern={f"^{name}$": r for name, r in ranks.items()},
            alpha_pattern={f"^{name}$": r for name, r in ranks.items()},  # alpha = rank: scale 1, W' = W + A B
        )
        with seeded(seed):
            backbone.unet.add_adapter(config, adapter_name=ADAPTER)

    def save(self, backbone: Backbone, path: Path, metadata: dict[str, str]) -> Path:
        return save_adapters(backbone, path, metadata)

    def describe(self) -> dict[str, Any]:
        return {"recipe": self.name, "rank_fraction": self.rank_fraction}
