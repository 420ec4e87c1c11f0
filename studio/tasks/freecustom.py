"""The `freecustom` task: compose reference concepts into a new image with multi-reference self-attention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from studio.errors import JobSpecError
from studio.tasks.common import generator, method_errors, seed_of, size_of
from studio.tasks.inputs import image_and_mask
from studio.tasks.options import parse_options

if TYPE_CHECKING:
    from pipelines.backbone import Backbone
    from studio.jobs import Job


@dataclass(frozen=True)
class ReferenceSpec:
    image: str
    caption: str = ""
    mask: str | None = None
    concept: str | None = None  # word whose cross-attention makes the mask when none is given


@dataclass(frozen=True)
class FreeCustomOptions:
    references: tuple[ReferenceSpec, ...] = ()
    mask_weight: float = 3.0
    style_fidelity: float = 1.0
    reference_seed: int = 0


def options(job: Job) -> FreeCustomOptions:
    opts = parse_options(FreeCustomOptions, job.options.get("freecustom"), "freecustom")
    if not opts.references:
        raise JobSpecError("invalid job: freecustom needs at least one reference (options.freecustom.references)")
    return opts


def total_steps(job: Job) -> int:
    return job.steps


def run(job: Job, backbone: Backbone, progress, cancel):
    from pipelines.customize import Reference, freecustom
    from studio.devices import available_memory_bytes
    from studio.runner import JobResult

    opts = options(job)
    seed = seed_of(job)
    height, width = size_of(job, backbone)
    references = []
    for i, spec in enumerate(opts.references):
        image, mask = image_and_mask(
            spec.image,
            spec.mask,
            backbone=backbone,
            model=job.model,
            caption=spec.caption,
            concept=spec.concept,
            name=f"reference {i}",
        )
        references.append(Reference(image, mask, spec.caption))
    with method_errors("freecustom"):
        output = freecustom(
            backbone,
            job.prompt,
            references,
            mask_weights=opts.mask_weight,
            style_fidelity=opts.style_fidelity,
            negative_prompt=job.negative_prompt or None,
            num_inference_steps=job.steps,
            guidance_scale=job.guidance,
            width=width,
            height=height,
            generator=generator(seed),
            reference_seed=opts.reference_seed,
            max_memory_bytes=available_memory_bytes(backbone.device),
            on_step=progress,
            cancel=cancel,
        )
    return JobResult(job.replace(seed=seed, width=width, height=height), list(output.images))
