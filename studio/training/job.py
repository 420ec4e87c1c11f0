"""One training job: check the folder, load the model, train with a progress bar, write the file and the report.

Why a request object: the CLI, tests and the bench build the same `TrainRequest`; everything a run depends on is
in it and in the report, so a report says how to make its file again.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import InputError, RunError

if TYPE_CHECKING:
    from pipelines.tuning.trainer import StepReport
    from studio.model_cache import ModelCache

RECIPES = ("lora", "classdiffusion", "residuals")
REPORT_NAME = "report.json"
CHECKPOINT_FOLDER = "checkpoints"


@dataclass(frozen=True)
class TrainRequest:
    recipe: str
    images: Path
    token: str
    cls: str
    out: Path
    model: str = "toyworld"
    steps: int | None = None  # None: the recipe's default
    learning_rate: float | None = None
    batch_size: int | None = None
    seed: int = 0
    prompt: str | None = None  # template with {token} and {cls}; None: the recipe's
    resolution: int | None = None  # None: the model's default size
    accumulation: int | None = None
    checkpoint_every: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # recipe options: rank, alpha, text_encoder, spl_weight...

    @property
    def file_name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{self.token}_{self.cls}_{self.recipe}").strip("-") or self.recipe
        return f"{stem}.safetensors"


def check_request(request: TrainRequest) -> None:
    """What can be refused before any model loads."""
    if request.recipe not in RECIPES:
        raise InputError(f"unknown recipe {request.recipe!r}; expected one of {', '.join(RECIPES)}")
    for label, word in (("--token", request.token), ("--class", request.cls)):
        if not word.strip():
            raise InputError(f"{label} is empty; give a word, e.g. --token sks --class star")
    if any(ch.isspace() for ch in request.token.strip()):
        raise InputError(f"--token {request.token!r}: the identifier is one word without spaces")
    template = request.prompt
    if template is not None and "{token}" not in template:
        raise InputError(f"--prompt {template!r} must contain {{token}} (and usually {{cls}})")


def _recipe(request: TrainRequest) -> tuple[Any, Any]:
    """(recipe object, its settings) for the request."""
    from pipelines.tuning import settings

    options = dict(request.options)
    if request.recipe == "lora":
        from pipelines.tuning.lora import LoraRecipe

        known = {"rank", "alpha", "text_encoder"}
        _refuse_unknown(options, known | {"prior_preservation", "prior_weight", "class_images"}, request.recipe)
        return LoraRecipe(**{k: v for k, v in options.items() if k in known}), settings.LORA
    if request.recipe == "classdiffusion":
        from pipelines.tuning.classdiffusion import ClassDiffusionRecipe

        _refuse_unknown(options, {"spl_weight"}, request.recipe)
        return ClassDiffusionRecipe(token=request.token, cls=request.cls, **options), settings.CLASSDIFFUSION
    from pipelines.tuning.residuals import ResidualsRecipe

    _refuse_unknown(options, {"rank_fraction"}, request.recipe)
    return ResidualsRecipe(**options), settings.RESIDUALS


def _refuse_unknown(options: dict[str, Any], known: set[str], recipe: str) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"the {recipe} recipe has no option(s) {', '.join(unknown)}")


def _check_words(pipe: Any, request: TrainRequest) -> None:
    tokenizer = pipe.tokenizer
    for label, word in (("class word", request.cls), ("token", request.token)):
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if not ids:
            raise InputError(f"the {label} {word!r} tokenizes to nothing for this model; use a plain word")


def _check_folder(request: TrainRequest, resolution: int) -> Any:
    from pipelines.tuning.settings import TRAINER
    from studio.training.concept_folder import read_concept_folder

    return read_concept_folder(request.images, min_side=max(1, int(resolution / TRAINER.max_upscale)))


def run_training(
    request: TrainRequest,
    models: ModelCache,
    *,
    on_step: Callable[[StepReport], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    cancel: Any = None,
) -> dict[str, Any]:
    """Train, write `out/<file_name>` and `out/report.json`; return the report. Resumes from `out/checkpoints`.

    The model from `models` is tuned in place (adapters added, weights changed): give the job a cache of its
    own (the CLI's process has one), never one that later serves generation jobs.
    """
    from pipelines.backbone import Backbone
    from pipelines.tuning.data import encode_examples
    from pipelines.tuning.settings import PROMPTS, TRAINER
    from pipelines.tuning.trainer import CheckpointMismatchError, TrainConfig, train

    note = on_note or (lambda text: None)
    check_request(request)
    recipe, defaults = _recipe(request)
    if request.out.exists() and not request.out.is_dir():
        raise InputError(f"--out {request.out}: not a folder")
    started = time.monotonic()
    pipe = models.get(request.model)
    try:
        backbone = Backbone.from_pipeline(pipe)
    except TypeError as exc:
        raise InputError(f"{request.model}: {exc}") from None
    resolution = request.resolution or backbone.default_size[0]
    if resolution % backbone.size_multiple:
        raise InputError(f"--resolution {resolution} is not a multiple of {backbone.size_multiple} for this model")
    folder = _check_folder(request, resolution)
    for text in folder.notes():
        note(text)
    low, high = TRAINER.advised_images
    if not low <= len(folder.images) <= high:
        note(f"{len(folder.images)} usable images; {low}-{high} work best")
    _check_words(pipe, request)
    template = request.prompt or PROMPTS.template
    prompts = [_fill(image.caption or template, request) for image in folder.images]
    if hasattr(recipe, "check"):
        recipe.check(backbone)
    examples = encode_examples(
        backbone, [i.image for i in folder.images], prompts, [i.mask for i in folder.images], resolution
    )
    options = request.options
    prior = None
    if request.recipe == "lora" and options.get("prior_preservation", defaults.prior_preservation):
        prior = _prior_examples(
            backbone, request, prompts, resolution, options.get("class_images", defaults.class_images)
        )
    config = TrainConfig(
        steps=request.steps or defaults.steps,
        learning_rate=request.learning_rate or defaults.learning_rate,
        batch_size=request.batch_size or defaults.batch_size,
        seed=request.seed,
        accumulation=request.accumulation or TRAINER.accumulation,
        checkpoint_every=request.checkpoint_every or TRAINER.checkpoint_every,
        prior_weight=float(options.get("prior_weight", getattr(defaults, "prior_weight", 1.0))),
    )
    request.out.mkdir(parents=True, exist_ok=True)
    try:
        result = train(
            backbone,
            recipe,
            examples,
            config,
            checkpoints=request.out / CHECKPOINT_FOLDER,
            prior=prior,
            on_step=on_step,
            cancel=cancel,
        )
    except CheckpointMismatchError as exc:
        raise InputError(str(exc)) from None
    except ValueError as exc:
        raise RunError(f"training failed: {exc}") from None
    if result.resumed_from:
        note(f"resumed from the checkpoint at step {result.resumed_from}")
    described = {
        **recipe.describe(),
        "token": request.token,
        "class": request.cls,
        "model": request.model,
        "steps": config.steps,
        "seed": config.seed,
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "prompts": list(prompts),
    }
    path = recipe.save(backbone, request.out / request.file_name, {"studio_tuning": json.dumps(described)})
    from studio.input_hashes import content_hash

    unet_params = sum(p.numel() for n, p in backbone.unet.named_parameters() if "lora_" not in n)
    report = {
        "file": str(path),
        "file_hash": content_hash(str(path)),
        **described,
        "images": [str(i.path) for i in folder.images],
        "refused": {str(p): why for p, why in folder.refused},
        "parameters": result.parameters,
        "unet_parameters": unet_params,
        "parameter_fraction": result.parameters / unet_params,
        "train_seconds": result.seconds,
        "total_seconds": time.monotonic() - started,
        "resumed_from": result.resumed_from,
        "peak_memory_bytes": result.peak_memory_bytes,
        "loss_curve": result.losses,
        "extra_curves": result.extra,
        "request": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(request).items()},
    }
    (request.out / REPORT_NAME).write_text(json.dumps(report, indent=2))
    return report


def _fill(template: str, request: TrainRequest) -> str:
    return template.replace("{token}", request.token).replace("{cls}", request.cls)


def _prior_examples(backbone: Any, request: TrainRequest, prompts: list[str], resolution: int, count: int) -> Any:
    """`count` class images: the instance captions without the identifier (DreamBooth's class prompt), in turn."""
    from pipelines.tuning.data import encode_examples
    from studio.training.class_images import class_images

    pattern = re.compile(rf"(?<!\S){re.escape(request.token)}(?!\S)\s*")
    class_prompts = list(dict.fromkeys(" ".join(pattern.sub("", p).split()) for p in prompts))
    shares = [count // len(class_prompts) + (i < count % len(class_prompts)) for i in range(len(class_prompts))]
    images, captions = [], []
    for prompt, share in zip(class_prompts, shares, strict=True):
        if share:
            images += class_images(backbone, request.model, prompt, share, request.seed)
            captions += [prompt] * share
    return encode_examples(backbone, images, captions, None, resolution)
