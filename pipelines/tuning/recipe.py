"""What a tuning recipe declares: which parameters learn, any extra loss term, and how its result is saved.

Why a small interface: the trainer (accelerate: device, precision, accumulation, checkpoints) is the same for
LoRA, ClassDiffusion and personalized residuals; a recipe only says what it tunes. The trainable tensors are
found by `requires_grad` on the pipeline's components, so checkpoints hold exactly what learns and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pipelines.backbone import Backbone

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


def components(backbone: Backbone) -> dict[str, torch.nn.Module]:
    """The pipeline's trainable-in-principle modules by name (the VAE never learns here)."""
    found = {}
    for name in COMPONENTS:
        module = getattr(backbone.pipe, name, None)
        if module is not None:
            found[name] = module
    return found


def freeze(backbone: Backbone) -> None:
    """No parameter of the pipeline learns until a recipe says so."""
    for module in (*components(backbone).values(), backbone.vae):
        module.requires_grad_(False)


def trainable_parameters(backbone: Backbone) -> dict[str, torch.nn.Parameter]:
    """`component.parameter_name` -> parameter, for every parameter that requires a gradient."""
    return {
        f"{component}.{name}": param
        for component, module in components(backbone).items()
        for name, param in module.named_parameters()
        if param.requires_grad
    }


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Initialise adapters from `seed` without touching the caller's global RNG (forked and restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class Recipe:
    """Base of the three recipes; see the module docstring."""

    name: str = ""
    trains_text: bool = False  # True: prompts are encoded with gradients at every step

    def prepare(self, backbone: Backbone, seed: int) -> None:
        """Freeze the pipeline and add what learns (adapters, a token); seeded."""
        raise NotImplementedError

    def extra_loss(self, backbone: Backbone) -> tuple[Tensor, dict[str, float]] | None:
        """A term added to the denoising loss at every optimizer micro-step, with figures for the report."""
        return None

    def mask_gradients(self, backbone: Backbone) -> None:
        """Zero the gradient parts that must not learn (e.g. other token rows), before the optimizer step."""

    def no_decay(self, name: str) -> bool:
        """Whether the trainable tensor `name` is exempt from weight decay (rows that must stay bit-exact)."""
        return False

    def save(self, backbone: Backbone, path: Path, metadata: dict[str, str]) -> Path:
        """Write the tuned weights as a safetensors file at `path` with `metadata` in its header."""
        raise NotImplementedError

    def parameter_count(self, backbone: Backbone) -> int:
        """Parameters that learn (what the report states)."""
        return sum(p.numel() for p in trainable_parameters(backbone).values())

    def describe(self) -> dict[str, Any]:
        """The recipe's settings, recorded in the report and the saved file."""
        return {"recipe": self.name}
