"""LoRA weights a control needs on the UNet while it runs (FaceID's), loaded through diffusers' peft path.

A control that carries `unet_loras` (a sequence of `UnetLora`) gets them loaded as peft adapters for the
duration of the denoising loop and deleted afterwards, so the cached model is its own again and LoRAs
already active (a prompt's `<lora:...>` tags) stay active at their own scales beside them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass(frozen=True)
class UnetLora:
    """One LoRA for the UNet in diffusers' saved layout: `unet.<module>.lora_A.weight` / `.lora_B.weight`."""

    name: str  # the peft adapter name (unique within a run)
    state: Mapping[str, Tensor]


def loras_of(controls: Sequence[object]) -> list[UnetLora]:
    """The LoRAs the controls carry, each once (two face prompts through one FaceID file share its LoRA)."""
    found: dict[str, UnetLora] = {}
    for control in controls:
        for lora in getattr(control, "unet_loras", ()):
            found.setdefault(lora.name, lora)
    return list(found.values())


@contextmanager
def applied_unet_loras(unet: nn.Module, controls: Sequence[object]) -> Iterator[None]:
    """The controls' LoRAs active on `unet` (at scale 1, as diffusers loads FaceID's) for the block."""
    loras = loras_of(controls)
    if not loras:
        yield
        return
    from peft.tuners.tuners_utils import BaseTunerLayer

    before = list(unet.active_adapters()) if getattr(unet, "_hf_peft_config_loaded", False) else []
    clash = sorted({lora.name for lora in loras} & set(getattr(unet, "peft_config", {})))
    if clash:
        raise ValueError(f"the UNet already has a LoRA adapter named {clash[0]}")
    loaded: list[str] = []
    try:
        for lora in loras:
            with warnings.catch_warnings():  # peft's notice that the model now holds several adapters: intended
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                unet.load_lora_adapter(dict(lora.state), prefix="unet", adapter_name=lora.name)
            loaded.append(lora.name)
        # Loading makes the new adapter the only active one; keep the ones that were active too.
        for module in unet.modules():
            if isinstance(module, BaseTunerLayer):
                module.set_adapter([*before, *loaded])
        yield
    finally:
        if loaded:
            unet.delete_adapters(loaded)  # the adapters active before are active again
