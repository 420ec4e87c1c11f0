"""Each tuning recipe's defaults, stated once, free of torch (the trainer, the studio's CLI and the report read them).

Why a module of their own: `studio train --help` is built from these without importing torch, and every
default carries its reason next to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval, doc


@dataclass(frozen=True)
class TrainerSettings:
    """What every recipe shares: checkpoints, accumulation, the image checks."""

    # A checkpoint every 50 steps: a killed toyworld run loses under a minute, a real one a few minutes.
    checkpoint_every: Annotated[int, Interval(ge=1, le=100000), doc("Save a resumable checkpoint every N steps.")] = 50
    # One micro-batch per optimizer step, as the diffusers DreamBooth examples' default.
    accumulation: Annotated[int, Interval(ge=1, le=64), doc("Gradient accumulation steps.")] = 1
    # Upscaling an image more than 2x blurs the concept the model is asked to learn: such an image is refused.
    max_upscale: Annotated[float, Interval(ge=1.0, le=16.0), doc("Largest upscale accepted for a concept image.")] = (
        2.0
    )
    # The DreamBooth papers tune on 3-5 images; more than 20 gains little and slows the run (a note, not an error).
    advised_images: tuple[int, int] = (3, 20)
    # AdamW as diffusers' examples: betas (0.9, 0.999), eps 1e-8, weight decay 1e-2, clip at 1.0.
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0


TRAINER = TrainerSettings()


@dataclass(frozen=True)
class LoraSettings:
    """DreamBooth-LoRA defaults: diffusers' `train_dreambooth_lora.py` README values."""

    steps: Annotated[int, Interval(ge=1, le=100000), doc("Optimizer steps.")] = 500  # the README's 500
    learning_rate: Annotated[float, Interval(gt=0.0, le=1.0), doc("Learning rate.")] = 1e-4  # README's 1e-4
    batch_size: Annotated[int, Interval(ge=1, le=64), doc("Images per step.")] = 1  # README's 1
    rank: Annotated[int, Interval(ge=1, le=1024), doc("LoRA rank.")] = 4  # the script's --rank 4 (3 MB on SD1.5)
    # alpha = rank (the script's choice): the LoRA's scale alpha/rank is 1, so the learning rate means the same
    # at every rank.
    alpha: Annotated[float, Interval(ge=0.0, le=4096.0), doc("LoRA alpha (scale alpha/rank); 0 means = rank.")] = 0.0
    text_encoder: Annotated[bool, doc("Also tune the text encoder(s) (q/k/v/out projections).")] = False
    # Prior preservation is opt-in as in the script (--with_prior_preservation False); weight 1.0 and 100 class
    # images are its defaults when on.
    prior_preservation: Annotated[bool, doc("Mix in class images the model generates itself.")] = False
    prior_weight: Annotated[float, Interval(ge=0.0, le=100.0), doc("Weight of the prior-preservation loss.")] = 1.0
    class_images: Annotated[int, Interval(ge=1, le=1000), doc("Class images to generate (cached).")] = 100


LORA = LoraSettings()
LORA_UNET_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")  # the SD/SDXL scripts' UNet targets
LORA_TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")  # the scripts' text-encoder targets


@dataclass(frozen=True)
class ClassDiffusionSettings:
    """ClassDiffusion (Huang et al., ICLR 2025) defaults: its `scripts/train_single.sh`."""

    steps: Annotated[int, Interval(ge=1, le=100000), doc("Optimizer steps.")] = 500  # single concept: 500
    # lr 1e-5 scaled by the batch (--scale_lr): 2e-5 at the script's batch 2.
    learning_rate: Annotated[float, Interval(gt=0.0, le=1.0), doc("Learning rate.")] = 2e-5
    batch_size: Annotated[int, Interval(ge=1, le=64), doc("Images per step.")] = 2  # the script's 2
    spl_weight: Annotated[float, Interval(ge=0.0, le=100.0), doc("Semantic preservation loss weight λ.")] = 1.0


CLASSDIFFUSION = ClassDiffusionSettings()


@dataclass(frozen=True)
class ResidualsSettings:
    """Personalized residuals (Ham et al., CVPR 2024) defaults, from the paper."""

    steps: Annotated[int, Interval(ge=1, le=100000), doc("Optimizer steps.")] = 150  # the paper's 150
    learning_rate: Annotated[float, Interval(gt=0.0, le=1.0), doc("Learning rate.")] = 1e-3  # the paper's 1e-3
    batch_size: Annotated[int, Interval(ge=1, le=64), doc("Images per step.")] = 4  # the paper's 4
    # r_i = 0.05 m_i: about 0.1% of SD1.x's UNet parameters.
    rank_fraction: Annotated[float, Interval(gt=0.0, le=1.0), doc("Residual rank as a fraction of channels.")] = 0.05


RESIDUALS = ResidualsSettings()


@dataclass(frozen=True)
class LagSettings:
    """Localized attention-guided sampling: where a block's residual applies."""

    # The paper binarises the identifier+class cross-attention map; we threshold the min-max normalised map
    # at its middle (0.5): a median threshold would always mark half the image, whatever the object's size.
    threshold: Annotated[float, Interval(ge=0.0, le=1.0), doc("Binarisation threshold of the normalised map.")] = 0.5


LAG = LagSettings()


@dataclass(frozen=True)
class PromptSettings:
    """The training prompt, as the DreamBooth and ClassDiffusion scripts write it."""

    template: str = "a photo of a {token} {cls}"  # class images use it without the identifier


PROMPTS = PromptSettings()


@dataclass(frozen=True)
class ApplySettings:
    """Using a tuned file at generation time."""

    # 1: the adapter as trained (a tuned LoRA's alpha/rank scale is already in the file).
    scale: Annotated[float, Interval(ge=-8.0, le=8.0), doc("LoRA scale (0: off, 1: as trained).")] = 1.0


APPLY = ApplySettings()
