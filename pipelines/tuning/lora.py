"""DreamBooth-LoRA: low-rank adapters (peft) on the UNet's attention projections, optionally the text encoder(s).

Why this file layout: the saved file is exactly what diffusers' `save_lora_weights` writes (keys `unet.…lora_A`
/ `lora_B`, the peft config in the header), so stock `pipe.load_lora_weights` loads it, and so does the
studio's `<lora:NAME:SCALE>` path, which goes through the same loader.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from pipelines.backbone import Backbone
from pipelines.tuning.files import read_header, write_weights
from pipelines.tuning.recipe import Recipe, components, freeze, seeded
from pipelines.tuning.settings import LORA, LORA_TEXT_TARGETS, LORA_UNET_TARGETS

ADAPTER = "studio_tuning"  # the adapter's name while training (not stored in the file)


@dataclass
class LoraRecipe(Recipe):
    rank: int = LORA.rank
    alpha: float = LORA.alpha  # 0: equal to the rank
    text_encoder: bool = LORA.text_encoder
    unet_targets: tuple[str, ...] = LORA_UNET_TARGETS
    name: str = "lora"

    @property
    def trains_text(self) -> bool:  # type: ignore[override]
        return self.text_encoder

    def _config(self, targets: tuple[str, ...]) -> LoraConfig:
        alpha = self.alpha or self.rank
        return LoraConfig(r=self.rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(targets))

    def prepare(self, backbone: Backbone, seed: int) -> None:
        freeze(backbone)
        with seeded(seed):
            backbone.unet.add_adapter(self._config(self.unet_targets), adapter_name=ADAPTER)
            if self.text_encoder:
                for name, module in components(backbone).items():
                    if name != "unet":
                        try:
                            module.add_adapter(self._config(LORA_TEXT_TARGETS), adapter_name=ADAPTER)
                        except ValueError as exc:  # transformers' peft integration refuses an older peft
                            raise ValueError(f"text-encoder LoRA: {exc}") from None

    def save(self, backbone: Backbone, path: Path, metadata: dict[str, str]) -> Path:
        return save_adapters(backbone, path, metadata)

    def describe(self) -> dict[str, Any]:
        return {
            "recipe": self.name,
            "rank": self.rank,
            "alpha": self.alpha or self.rank,
            "text_encoder": self.text_encoder,
            "targets": list(self.unet_targets),
        }


def save_adapters(backbone: Backbone, path: Path, metadata: dict[str, str]) -> Path:
    """Write every component's `ADAPTER` as diffusers' `save_lora_weights` does, plus `metadata` in the header."""
    from diffusers.utils import convert_state_dict_to_diffusers

    layers: dict[str, Any] = {}
    for name, module in components(backbone).items():
        if ADAPTER not in (getattr(module, "peft_config", None) or {}):
            continue
        state = convert_state_dict_to_diffusers(get_peft_model_state_dict(module, adapter_name=ADAPTER))
        layers[f"{name}_lora_layers"] = state
        layers[f"{name}_lora_adapter_metadata"] = module.peft_config[ADAPTER].to_dict()
    with tempfile.TemporaryDirectory() as folder:
        type(backbone.pipe).save_lora_weights(folder, weight_name="lora.safetensors", **layers)
        written = Path(folder) / "lora.safetensors"
        tensors = safetensors.torch.load_file(str(written))
        header = read_header(written)
    header.pop("format", None)
    return write_weights(path, tensors, {**header, **metadata})
