"""VisCtrl: tuning-free visual customization by view-iterative self-attention control (arXiv 2406.06258).

Per pass: the reference and the target are each DDIM-inverted with their own prompt; the reference row
is teacher-forced onto its trajectory at every step while the edited target starts from its own x_T and
takes the reference's keys and values in self-attention (control: `attention_processors/visctrl.py`).
The target inversion is the second teacher-forced trajectory of the official layout; its row affects no
other row's attention, so it is not run through the UNet: the paste-back through the target mask is what
keeps everything outside the object.

View iteration accumulates: pass k edits the output of pass k − 1 (the official script re-inverts the
original target every pass because of a global-flag bug). The reference is inverted once per schedule.

Several targets (views of one object, video frames) are edited together with Feature Gradual Sampling:
view k also attends to tokens sampled from views 0 … k − 1, weighted by `alpha`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import PIL.Image
import torch
from torch import Tensor

from attention_processors import BatchLayout, Control, StepWindow
from attention_processors.uniform_attention import UniformCrossAttention
from attention_processors.visctrl import VISCTRL, FeatureGradualSampling
from pipelines._denoise import denoise
from pipelines.backbone import Backbone
from pipelines.canvas import object_canvas, whole_image_canvas
from pipelines.events import CancelToken, StepCallback
from pipelines.inversion import invert
from pipelines.outputs import Inversion
from pipelines.samplers import DEFAULT_SAMPLER, require_ddim
from pipelines.settings import FIRST_PASS, LATER_PASS, VISCTRL_RUN, VisCtrlPass, VisCtrlRunSettings, check_inversion  # noqa: F401 - re-exported


@dataclass(frozen=True)
class VisCtrlOutput:
    images: list[PIL.Image.Image]  # each target with its edit pasted back through its mask
    passes: list[list[PIL.Image.Image]]  # passes[k][v]: view v after pass k (full images)


@torch.no_grad()
def visctrl(
    backbone: Backbone,
    reference: PIL.Image.Image,
    reference_mask: Tensor,
    targets: Sequence[tuple[PIL.Image.Image, Tensor]],
    *,
    reference_prompt: str = "",
    target_prompt: str = "",
    passes: int = VISCTRL_RUN.passes,
    first_pass: VisCtrlPass = FIRST_PASS,
    later_passes: VisCtrlPass = LATER_PASS,
    alpha: float = VISCTRL.alpha,
    sample_fraction: float = VISCTRL.sample_fraction,
    crop: bool = VISCTRL_RUN.crop,
    margin: float = VISCTRL_RUN.margin,
    size: int | None = None,
    sampler: str = DEFAULT_SAMPLER,
    inversion: str = "ddim",
    controls: Sequence[Control] = (),
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> VisCtrlOutput:
    """Transfer the reference object's appearance onto each target object.

    Args:
        reference, reference_mask: the appearance to transfer; the mask [H, W] marks the object.
        targets: (image, mask) per view; one view is plain VisCtrl, several use Feature Gradual Sampling.
        passes: view iterations; each pass edits the previous pass's output.
        alpha, sample_fraction: FGS weight of the already-edited views and share of their tokens sampled.
        crop: edit a square crop around each mask (official behaviour); False edits the whole square image.
        size: working resolution (default: the model's native size).
        sampler: must be DDIM: both images are DDIM-inverted and the reference row replays its trajectory.
        inversion: "ddim", or "uniform": both images are inverted with uniform cross-attention maps (UAM,
            arXiv 2411.19652) and the teacher-forced reference row keeps them, replaying its own inversion.
    """
    # 1. validate
    require_ddim(sampler, "VisCtrl")
    uniform = check_inversion(inversion) == "uniform"
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    if not targets:
        raise ValueError("give at least one target (image, mask) to edit")
    for name, (image, mask) in [
        ("reference", (reference, reference_mask)),
        *[(f"target {i}", t) for i, t in enumerate(targets)],
    ]:
        if tuple(mask.shape) != (image.height, image.width):
            raise ValueError(
                f"{name} mask is {mask.shape[1]}x{mask.shape[0]} but its image is {image.width}x{image.height}"
            )
        if not bool((mask > 0.5).any()):
            raise ValueError(f"{name} mask is empty: mark the object")
    size = size or min(backbone.default_size)
    backbone.check_size(size, size)
    frame = (lambda img, m: object_canvas(m, size, margin)) if crop else (lambda img, m: whole_image_canvas(img, size))
    ref_canvas = frame(reference, reference_mask)
    ref_image = ref_canvas.cut(reference)
    canvases = [frame(image, mask) for image, mask in targets]
    # 2. encode: stream 0 the reference, streams 1..V the views
    views = len(targets)
    prompts = [reference_prompt] + [target_prompt] * views
    roles = ["reference"] + ["target"] * views
    layout = BatchLayout.with_cfg(roles)
    embeds = backbone.encode_prompts(prompts, None, cfg=True)
    # 3-4. passes: invert, denoise with the reference teacher-forced, paste back
    current = [image.convert("RGB") for image, _ in targets]
    history: list[list[PIL.Image.Image]] = []
    reference_inversions: dict[tuple[int, float], Inversion] = {}
    for k in range(passes):
        schedule = first_pass if k == 0 else later_passes
        key = (schedule.num_inference_steps, schedule.guidance_scale)
        if key not in reference_inversions:
            reference_inversions[key] = invert(
                backbone,
                ref_image,
                reference_prompt,
                num_inference_steps=schedule.num_inference_steps,
                guidance_scale=schedule.guidance_scale,
                uniform=uniform,
                cancel=cancel,
            )
        ref_inv = reference_inversions[key]
        view_inv = invert(
            backbone,
            [c.cut(img) for c, img in zip(canvases, current, strict=False)],
            target_prompt,
            num_inference_steps=schedule.num_inference_steps,
            guidance_scale=schedule.guidance_scale,
            uniform=uniform,
            cancel=cancel,
        )
        control = FeatureGradualSampling(
            steps=StepWindow(schedule.start, 1.0), alpha=alpha, sample_fraction=sample_fraction, seed=k
        )
        scheduler = backbone.ddim_scheduler()
        scheduler.set_timesteps(schedule.num_inference_steps, device=backbone.device)
        latents = torch.cat([ref_inv.x_T, view_inv.x_T])  # (1 + V, C, h, w)
        latents = denoise(
            backbone,
            latents,
            scheduler=scheduler,
            timesteps=scheduler.timesteps,
            embeds=embeds,
            layout=layout,
            guidance_scale=schedule.guidance_scale,
            controls=[control, *([UniformCrossAttention(roles=("reference",))] if uniform else []), *controls],
            teacher={0: ref_inv.stream(0)},
            on_step=on_step,
            cancel=cancel,
        )  # (1 + V, C, h, w)
        edited = backbone.latents_to_pil(latents[1:])
        current = [c.paste(e, img, m) for c, e, img, (_, m) in zip(canvases, edited, current, targets, strict=False)]
        history.append(list(current))
    # 5. return the pasted results
    return VisCtrlOutput(images=current, passes=history)
