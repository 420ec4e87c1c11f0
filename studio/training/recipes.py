"""Each tuning recipe's flags, declared once from its settings: `studio train <recipe> --help` shows the
recipe's own defaults and ranges, read from `pipelines.tuning.settings` (torch-free), never restated here.

Why options models (as a task's): the train commands are derived from them like the task commands, so a
setting added to a recipe's dataclass and named here gets its flag, help, range and default with no CLI code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pipelines.tuning.settings import CLASSDIFFUSION, LORA, RESIDUALS, TRAINER
from studio.declarations import Flag, Options, setting


class LoraFlags(Options):
    steps: int = setting(LORA, "steps")
    learning_rate: Annotated[float, Flag(name="--lr")] = setting(LORA, "learning_rate")
    batch_size: int = setting(LORA, "batch_size")
    checkpoint_every: int = setting(TRAINER, "checkpoint_every")
    rank: int = setting(LORA, "rank")
    alpha: float = setting(LORA, "alpha")
    text_encoder: bool = setting(LORA, "text_encoder")
    prior_preservation: Annotated[bool, Flag(name="--prior")] = setting(LORA, "prior_preservation")
    prior_weight: float = setting(LORA, "prior_weight")
    class_images: int = setting(LORA, "class_images")


class ClassDiffusionFlags(Options):
    steps: int = setting(CLASSDIFFUSION, "steps")
    learning_rate: Annotated[float, Flag(name="--lr")] = setting(CLASSDIFFUSION, "learning_rate")
    batch_size: int = setting(CLASSDIFFUSION, "batch_size")
    checkpoint_every: int = setting(TRAINER, "checkpoint_every")
    spl_weight: float = setting(CLASSDIFFUSION, "spl_weight")


class ResidualsFlags(Options):
    steps: int = setting(RESIDUALS, "steps")
    learning_rate: Annotated[float, Flag(name="--lr")] = setting(RESIDUALS, "learning_rate")
    batch_size: int = setting(RESIDUALS, "batch_size")
    checkpoint_every: int = setting(TRAINER, "checkpoint_every")
    rank_fraction: float = setting(RESIDUALS, "rank_fraction")


# The fields every recipe's TrainRequest takes itself; the rest go to the recipe as its options.
REQUEST_FIELDS = ("steps", "learning_rate", "batch_size", "checkpoint_every")


@dataclass(frozen=True)
class RecipeDeclaration:
    name: str
    summary: str  # the command's help: one line
    flags: type[Options]


RECIPE_DECLARATIONS = (
    RecipeDeclaration(
        "lora", "DreamBooth-LoRA: peft LoRA on the UNet's attention projections; a diffusers-format .safetensors.",
        LoraFlags,
    ),
    RecipeDeclaration(
        "classdiffusion", "ClassDiffusion: cross-attention K/V and a new token, with the semantic preservation loss.",
        ClassDiffusionFlags,
    ),
    RecipeDeclaration(
        "residuals",
        "Personalized residuals: low-rank residuals on every transformer block's proj_out (use --lag to localise).",
        ResidualsFlags,
    ),
)  # fmt: skip
