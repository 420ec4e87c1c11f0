"""Small pieces the method tasks share."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field

from pipelines.settings import check_inversion
from studio.errors import JobSpecError
from studio.working_size import ModelShape, available_bytes, check_fits, estimate_peak_bytes, fit_to_area

if TYPE_CHECKING:
    from pipelines.backbone import Backbone
    from studio.declarations import TaskRun
    from studio.jobs import Job


def seed_of(job: Job) -> int:
    return job.seed if job.seed is not None else secrets.randbelow(2**32)


def generator(seed: int) -> Any:
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def size_of(
    job: Job, backbone: Backbone, image_size: tuple[int, int] | None = None, *, rows: int = 2
) -> tuple[int, int]:
    """(height, width) to run at: the job's, else the input image's brought to the model's working area, else
    the model's default; refused with a one-line error if the model cannot run it or it cannot fit in memory.

    An input larger than the model's working area (its default size) is scaled down to that area, aspect
    kept (a phone photo is 4032x3024); a user who wants the full size asks for it with --width/--height.
    `rows` is how many images one UNet call carries (2 with classifier-free guidance).
    """
    fallback_h = fallback_w = None
    if image_size is not None:
        default_h, default_w = backbone.default_size
        image_h, image_w = image_size
        fallback_w, fallback_h = fit_to_area(image_w, image_h, default_h * default_w, backbone.size_multiple)
    try:
        height, width = backbone.resolve_size(job.height or fallback_h, job.width or fallback_w)
    except ValueError as exc:
        raise JobSpecError(f"invalid job for this model: {exc}") from exc
    check_memory(backbone, height, width, rows=rows)
    return height, width


def check_memory(backbone: Backbone, height: int, width: int, *, rows: int = 2) -> None:
    """Refuse a size whose largest tensors would not fit in the device's free memory, before allocating."""
    import torch

    shape = ModelShape.of(dict(backbone.unet.config), dict(backbone.vae.config))
    dtype_bytes = torch.finfo(backbone.dtype).bits // 8
    fused = backbone.device.type == "cuda"  # SDPA's flash and memory-efficient kernels never form the scores
    estimate = estimate_peak_bytes(shape, width, height, rows=rows, dtype_bytes=dtype_bytes, fused_attention=fused)
    check_fits(estimate, available_bytes(str(backbone.device)), width, height)


def method_errors(method: str):
    """Turn a pipeline's ValueError (bad mask, too many references, ...) into a clear job error."""
    import contextlib

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except ValueError as exc:
            raise JobSpecError(f"{method}: {exc}") from exc

    return guard()


InversionMode = Annotated[str, AfterValidator(check_inversion)]
"""How a method inverts its real image(s): "ddim" or "uniform" (uniform cross-attention maps); others refused."""


def inversion_option(default: str = "ddim") -> Any:
    """The inversion option of every method that inverts a real image, declared once (type, help, check)."""
    return Field(
        check_inversion(default),
        max_length=16,
        description="Inversion of the real image: ddim, or uniform (every cross-attention map uniform, UAM).",
    )


REPLAYS_INVERSION = "it replays a DDIM inversion, which only the deterministic DDIM update retraces"


def hooks(task: TaskRun) -> dict[str, Any]:
    """What every pipeline call of a task passes through: the job's extra controls, progress and cancel."""
    return {"controls": task.controls, "on_step": task.on_step, "cancel": task.cancel}


def sampling(task: TaskRun, seed: int, height: int, width: int) -> dict[str, Any]:
    """The keyword arguments a sampling pipeline (generate, mutual_edit, freecustom) takes from the job."""
    job = task.job
    return {
        "negative_prompt": job.negative_prompt or None,  # None keeps the family's default (SDXL: zeros)
        "num_inference_steps": job.steps,
        "guidance_scale": job.guidance,
        "sampler": job.sampler,
        "width": width,
        "height": height,
        "generator": generator(seed),
        **hooks(task),
    }
