"""The one trainer: accelerate for device, mixed precision, gradient accumulation and checkpoints; a recipe says
what learns.

Why every draw comes from a per-step generator: the batch order, the noise and the timesteps of optimizer step
s are functions of (seed, s) alone, so a run resumed from a checkpoint draws exactly what the uninterrupted run
would have drawn; with the optimizer state restored by accelerate, a resumed run on the CPU is bit-identical.

A checkpoint is a folder `step-NNNNNN/` under the run's checkpoint folder: accelerate's state (optimizer and
RNG), the trainable tensors as safetensors and the progress as JSON. It is written to a temporary folder and
renamed, so a kill while saving leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from accelerate import Accelerator
from torch import Tensor

from pipelines.backbone import Backbone, UNetConditioning
from pipelines.events import CancelToken
from pipelines.tuning.data import ConceptExamples
from pipelines.tuning.loss import denoising_loss, draw_training_noise, noise_scheduler
from pipelines.tuning.recipe import Recipe, trainable_parameters
from pipelines.tuning.settings import TRAINER

CHECKPOINT_PREFIX = "step-"


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    learning_rate: float
    batch_size: int
    seed: int = 0
    accumulation: int = TRAINER.accumulation
    checkpoint_every: int = TRAINER.checkpoint_every
    prior_weight: float = 1.0


@dataclass(frozen=True)
class StepReport:
    """What the trainer reports after each optimizer step."""

    step: int  # optimizer steps done
    total: int
    loss: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    steps: int
    seconds: float
    losses: list[float]
    parameters: int
    resumed_from: int | None
    peak_memory_bytes: int | None  # CUDA peak allocated, None on the CPU
    extra: dict[str, list[float]] = field(default_factory=dict)


class CheckpointMismatchError(ValueError):
    """The checkpoint folder holds a run with other images, recipe or settings."""


def fingerprint(recipe: Recipe, config: TrainConfig, examples: ConceptExamples, prior: ConceptExamples | None) -> str:
    """What must match for a checkpoint to continue this run (the step count and checkpoint spacing may change)."""
    described = {"recipe": recipe.describe(), "config": {**asdict(config), "steps": None, "checkpoint_every": None}}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
    for part in (examples, prior):
        if part is not None:
            digest.update(part.latents.detach().float().cpu().numpy().tobytes())
            digest.update("\n".join(part.prompts).encode())
            if part.masks is not None:
                digest.update(part.masks.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _generator(seed: int, *parts: int) -> torch.Generator:
    key = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & ((1 << 63) - 1))


def batch_indices(count: int, batch: int, micro_step: int, seed: int, stream: int = 0) -> list[int]:
    """Rows of micro-step `micro_step`: consecutive epochs, each a seeded permutation of the `count` examples."""
    rows = []
    for position in range(micro_step * batch, (micro_step + 1) * batch):
        epoch, offset = divmod(position, count)
        rows.append(int(torch.randperm(count, generator=_generator(seed, stream, epoch))[offset]))
    return rows


def latest_checkpoint(folder: Path | None) -> Path | None:
    if folder is None or not folder.is_dir():
        return None
    done = sorted(p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if (p / "progress.json").is_file())
    return done[-1] if done else None


class _Conditioner:
    """Prompts -> UNet conditioning; cached without gradients unless the recipe tunes the text side."""

    def __init__(self, backbone: Backbone, trains_text: bool, image_size: tuple[int, int]) -> None:
        self.backbone, self.trains_text, self.image_size = backbone, trains_text, image_size
        self.cache: dict[str, UNetConditioning] = {}

    def __call__(self, prompts: list[str]) -> UNetConditioning:
        if self.trains_text:
            return self._encode(prompts)
        missing = [p for p in dict.fromkeys(prompts) if p not in self.cache]
        if missing:
            with torch.no_grad():
                encoded = self._encode(missing)
            for i, prompt in enumerate(missing):
                extra = None
                if encoded.added_cond_kwargs is not None:
                    extra = {k: v[i : i + 1] for k, v in encoded.added_cond_kwargs.items()}
                self.cache[prompt] = UNetConditioning(encoded.encoder_hidden_states[i : i + 1], extra)
        parts = [self.cache[p] for p in prompts]
        extra = None
        if parts[0].added_cond_kwargs is not None:
            extra = {k: torch.cat([p.added_cond_kwargs[k] for p in parts]) for k in parts[0].added_cond_kwargs}
        return UNetConditioning(torch.cat([p.encoder_hidden_states for p in parts]), extra)

    def _encode(self, prompts: list[str]) -> UNetConditioning:
        embeds = self.backbone.encode_prompts(prompts, cfg=False)
        return self.backbone.conditioning(embeds, [(i, "cond") for i in range(len(prompts))], self.image_size)


def _mixed_precision(backbone: Backbone) -> str:
    """fp16/bf16 autocast on CUDA when the model is loaded in that dtype; fp32 (no autocast) on the CPU."""
    if backbone.device.type != "cuda":
        return "no"
    return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(backbone.dtype, "no")


def train(
    backbone: Backbone,
    recipe: Recipe,
    examples: ConceptExamples,
    config: TrainConfig,
    *,
    checkpoints: Path | None = None,
    prior: ConceptExamples | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    cancel: CancelToken | None = None,
    prepared: bool = False,
) -> TrainResult:
    """Tune `backbone` in place with `recipe` on `examples`; resume from the latest checkpoint in `checkpoints`.

    `prior` (class images the model made itself) adds DreamBooth's prior-preservation term with
    `config.prior_weight`. `prepared=True` means `recipe.prepare` was already called (e.g. to inspect it).
    Raises `pipelines.events.Cancelled` at a step boundary on `cancel`, after saving a checkpoint there.
    """
    # 1. what learns
    if not prepared:
        recipe.prepare(backbone, config.seed)
    params = trainable_parameters(backbone)
    if not params:
        raise ValueError(f"recipe {recipe.name!r} left nothing to train")
    for param in params.values():
        param.data = param.data.float()  # trainable tensors in fp32 even when the model runs in fp16 (autocast)

    # 2. accelerate: device, precision, accumulation, checkpoint state
    accelerator = Accelerator(
        cpu=backbone.device.type == "cpu",
        mixed_precision=_mixed_precision(backbone),
        gradient_accumulation_steps=config.accumulation,
    )
    decayed = [p for n, p in params.items() if not recipe.no_decay(n)]
    exempt = [p for n, p in params.items() if recipe.no_decay(n)]
    groups = [{"params": decayed}] + ([{"params": exempt, "weight_decay": 0.0}] if exempt else [])
    optimizer = torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=config.learning_rate,
        betas=(0.9, 0.999),
        weight_decay=TRAINER.weight_decay,
        eps=1e-8,
    )
    optimizer = accelerator.prepare(optimizer)
    key = fingerprint(recipe, config, examples, prior)
    losses: list[float] = []
    extras: dict[str, list[float]] = {}
    start = 0
    found = latest_checkpoint(checkpoints)
    if found is not None:
        start, losses, extras = _load(accelerator, found, params, key)
        accelerator.step = start * config.accumulation

    # 3. the loop
    scheduler = noise_scheduler(backbone)
    num_t = int(scheduler.config.num_train_timesteps)
    conditioner = _Conditioner(backbone, recipe.trains_text, backbone.image_size(examples.latents))
    if backbone.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(backbone.device)
    started = time.monotonic()
    for step in range(start, config.steps):
        if cancel is not None and cancel.cancelled:
            if checkpoints is not None and step > start:
                _save(accelerator, checkpoints, step, params, losses, extras, key)
            cancel.check(step, config.steps, "train")
        step_loss, step_extra = 0.0, {}
        for k in range(config.accumulation):
            micro = step * config.accumulation + k
            with accelerator.accumulate(backbone.unet), accelerator.autocast():
                loss, figures = _micro_step(
                    backbone, recipe, scheduler, num_t, examples, prior, config, micro, conditioner
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    recipe.mask_gradients(backbone)
                    accelerator.clip_grad_norm_(list(params.values()), TRAINER.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            step_loss += float(loss.detach()) / config.accumulation
            for name, value in figures.items():
                step_extra[name] = step_extra.get(name, 0.0) + value / config.accumulation
        losses.append(step_loss)
        for name, value in step_extra.items():
            extras.setdefault(name, []).append(value)
        done = step + 1
        if checkpoints is not None and done % config.checkpoint_every == 0 and done < config.steps:
            _save(accelerator, checkpoints, done, params, losses, extras, key)
        if on_step is not None:
            on_step(StepReport(done, config.steps, step_loss, step_extra))
    peak = torch.cuda.max_memory_allocated(backbone.device) if backbone.device.type == "cuda" else None
    return TrainResult(
        steps=config.steps,
        seconds=time.monotonic() - started,
        losses=losses,
        parameters=recipe.parameter_count(backbone),
        resumed_from=start if found is not None else None,
        peak_memory_bytes=peak,
        extra=extras,
    )


def _micro_step(
    backbone: Backbone,
    recipe: Recipe,
    scheduler: Any,
    num_t: int,
    examples: ConceptExamples,
    prior: ConceptExamples | None,
    config: TrainConfig,
    micro: int,
    conditioner: _Conditioner,
) -> tuple[Tensor, dict[str, float]]:
    """The loss of one micro-batch (instance rows, then prior rows), plus the recipe's extra term."""
    device, dtype = backbone.device, backbone.dtype
    rows = batch_indices(len(examples), config.batch_size, micro, config.seed)
    latents = examples.latents[rows]  # (b, C, h, w)
    masks = examples.masks[rows] if examples.masks is not None else None  # (b, 1, h, w)
    prompts = [examples.prompts[r] for r in rows]
    if prior is not None:
        prior_rows = batch_indices(len(prior), config.batch_size, micro, config.seed, stream=1)
        latents = torch.cat([latents, prior.latents[prior_rows]])  # (2b, C, h, w)
        if masks is not None:
            masks = torch.cat([masks, torch.ones_like(masks)])  # prior rows count everywhere
        prompts += [prior.prompts[r] for r in prior_rows]
    noise, timesteps = draw_training_noise(latents.shape, num_t, _generator(config.seed, 2, micro))
    per_example = denoising_loss(
        backbone,
        scheduler,
        latents.to(device, dtype),
        conditioner(prompts),
        noise.to(device, dtype),
        timesteps.to(device),
        None if masks is None else masks.to(device),
    )  # (B,)
    b = len(rows)
    loss = per_example[:b].mean()
    figures = {"instance_loss": float(loss.detach())}
    if prior is not None:
        prior_loss = per_example[b:].mean()
        figures["prior_loss"] = float(prior_loss.detach())
        loss = loss + config.prior_weight * prior_loss
    term = recipe.extra_loss(backbone)
    if term is not None:
        value, more = term
        loss = loss + value
        figures.update(more)
    return loss, figures


def _save(
    accelerator: Accelerator,
    folder: Path,
    step: int,
    params: dict[str, torch.nn.Parameter],
    losses: list[float],
    extras: dict[str, list[float]],
    key: str,
) -> Path:
    final = folder / f"{CHECKPOINT_PREFIX}{step:06d}"
    temp = folder / f".{final.name}.part"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    accelerator.save_state(str(temp))  # optimizer moments and RNG states
    safetensors.torch.save_file(
        {k: v.detach().cpu().contiguous() for k, v in params.items()}, temp / "weights.safetensors"
    )
    progress = {"step": step, "losses": losses, "extra": extras, "fingerprint": key}
    (temp / "progress.json").write_text(json.dumps(progress))  # written last: its presence marks a whole checkpoint
    shutil.rmtree(final, ignore_errors=True)
    temp.rename(final)
    for older in folder.glob(f"{CHECKPOINT_PREFIX}*"):
        if older != final:
            shutil.rmtree(older, ignore_errors=True)
    return final


def _load(
    accelerator: Accelerator, found: Path, params: dict[str, torch.nn.Parameter], key: str
) -> tuple[int, list[float], dict[str, list[float]]]:
    progress = json.loads((found / "progress.json").read_text())
    if progress.get("fingerprint") != key:
        raise CheckpointMismatchError(
            f"{found} is from a run with other images, recipe or settings; remove it or train into another folder"
        )
    weights = safetensors.torch.load_file(str(found / "weights.safetensors"))
    if set(weights) != set(params):
        raise CheckpointMismatchError(f"{found} holds other trainable tensors than this run")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(weights[name])
    accelerator.load_state(str(found))
    return int(progress["step"]), list(progress["losses"]), {k: list(v) for k, v in progress["extra"].items()}
