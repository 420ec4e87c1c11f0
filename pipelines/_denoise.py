"""Private helpers shared by the task pipelines: per-item noise, the layout-to-stream plan, the guided
UNet prediction, and the one DDIM denoising loop (txt2img, img2img, reconstruction, and later methods'
multi-branch batches with teacher forcing).

Vocabulary: a *stream* is one latent the loop carries, one per distinct (role, item) of the batch layout.
A *row* is one UNet batch row; with CFG a stream has an "uncond" row and a "cond" row. The loop keeps
latents per stream (N, C, h, w) and builds the UNet batch (B, C, h, w) in the layout's row order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from attention_processors import BatchLayout, Control, attention_control
from attention_processors.layout import Half
from pipelines.backbone import Backbone, PromptEmbeds, UNetConditioning
from pipelines.events import CancelToken, StepCallback, StepEvent

Generators = torch.Generator | Sequence[torch.Generator]
Teacher = Mapping[int, Sequence[Tensor]]  # stream -> [z_0, ..., z_T], each (C, h, w) or (1, C, h, w)


def as_list(value: str | Sequence[str], name: str) -> list[str]:
    """Normalise a prompt argument to a list of strings."""
    if isinstance(value, str):
        return [value]
    values = list(value)
    if not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} must be a string or a non-empty list of strings")
    return values


def negatives_for(negative_prompt: str | Sequence[str] | None, count: int) -> list[str] | None:
    """One negative prompt per item: a string applies to every item; None keeps the family default."""
    if negative_prompt is None:
        return None
    negatives = [negative_prompt] * count if isinstance(negative_prompt, str) else list(negative_prompt)
    if len(negatives) != count:
        raise ValueError(f"got {len(negatives)} negative prompts for {count} prompts")
    return negatives


def draw_noise(
    count: int, shape: tuple[int, int, int], generator: Generators, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Standard normal noise (count, *shape), drawn item by item so a batch reproduces single runs.

    Item i takes the first draw of `generator[i]` when a list is given (so item i of a batch equals a single
    run seeded like `generator[i]`), or the i-th consecutive draw of a single generator.
    """
    if isinstance(generator, torch.Generator):
        generators = [generator] * count
    else:
        generators = list(generator)
        if len(generators) != count:
            raise ValueError(f"got {len(generators)} generators for {count} items; pass one per item or just one")
    draws = [randn_tensor((1, *shape), generator=g, device=device, dtype=dtype) for g in generators]
    return torch.cat(draws)  # (count, C, h, w)


@dataclass(frozen=True)
class BatchPlan:
    """How the rows of a batch layout map onto latent streams, and back for classifier-free guidance."""

    layout: BatchLayout
    rows: tuple[tuple[int, Half], ...]  # row r -> (stream, half)
    cond_rows: tuple[int, ...]  # stream -> its cond row
    uncond_rows: tuple[int, ...]  # stream -> its uncond row (its cond row when the stream runs without CFG)

    @classmethod
    def of(cls, layout: BatchLayout) -> BatchPlan:
        streams: dict[tuple[str, int], int] = {}
        for row in layout.entries:
            streams.setdefault((row.role, row.item), len(streams))
        rows = tuple((streams[(row.role, row.item)], row.half) for row in layout.entries)
        cond: dict[int, int] = {}
        uncond: dict[int, int] = {}
        for r, (stream, half) in enumerate(rows):
            table = cond if half == "cond" else uncond
            if stream in table:
                raise ValueError(f"batch layout has two {half!r} rows for stream {stream}")
            table[stream] = r
        missing = [s for s in range(len(streams)) if s not in cond]
        if missing:
            raise ValueError(f"batch layout streams {missing} have no 'cond' row")
        cond_rows = tuple(cond[s] for s in range(len(streams)))
        uncond_rows = tuple(uncond.get(s, cond[s]) for s in range(len(streams)))
        return cls(layout, rows, cond_rows, uncond_rows)

    @property
    def streams(self) -> int:
        return len(self.cond_rows)

    def predict(
        self,
        backbone: Backbone,
        latents: Tensor,
        timestep: Tensor | int,
        conditioning: UNetConditioning,
        guidance_scale: float,
    ) -> Tensor:
        """One UNet call on the layout's rows; returns the guided model output per stream (N, C, h, w)."""
        gather = torch.tensor([stream for stream, _ in self.rows], device=latents.device)
        model_input = latents.index_select(0, gather)  # (B, C, h, w) in layout row order
        output = backbone.unet(
            model_input,
            timestep,
            encoder_hidden_states=conditioning.encoder_hidden_states,
            added_cond_kwargs=conditioning.added_cond_kwargs,
            return_dict=False,
        )[0]  # (B, C, h, w)
        cond = output[list(self.cond_rows)]  # (N, C, h, w)
        if not self.layout.has_cfg:
            return cond
        uncond = output[list(self.uncond_rows)]  # (N, C, h, w); == cond for streams without CFG, so they stay cond
        return uncond + guidance_scale * (cond - uncond)


def check_teacher(teacher: Teacher | None, latents: Tensor, steps: int) -> None:
    """Raise a clear ValueError when a teacher trajectory cannot drive this loop."""
    for stream, trajectory in (teacher or {}).items():
        if not 0 <= stream < latents.shape[0]:
            raise ValueError(f"teacher stream {stream} is outside the {latents.shape[0]} latent streams")
        if len(trajectory) != steps + 1:
            raise ValueError(
                f"teacher trajectory for stream {stream} has {len(trajectory)} latents; a schedule of {steps} "
                f"steps needs {steps + 1} ([z_0, ..., z_{steps}])"
            )
        if trajectory[0].numel() != latents[0].numel():
            raise ValueError(f"teacher latents {tuple(trajectory[0].shape)} do not match {tuple(latents.shape[1:])}")


def force(latents: Tensor, teacher: Teacher | None, position: int) -> Tensor:
    """Overwrite the teacher streams with their stored latent z_position (a new tensor; input untouched)."""
    if not teacher:
        return latents
    latents = latents.clone()
    for stream, trajectory in teacher.items():
        latents[stream] = trajectory[position].reshape(latents.shape[1:]).to(latents)  # (C, h, w)
    return latents


def denoise(
    backbone: Backbone,
    latents: Tensor,
    *,
    scheduler: DDIMScheduler,
    timesteps: Sequence[int] | Tensor,
    embeds: PromptEmbeds,
    layout: BatchLayout,
    guidance_scale: float,
    controls: Sequence[Control] = (),
    teacher: Teacher | None = None,
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> Tensor:
    """Run deterministic DDIM (eta 0) over `timesteps` through the studio's attention processors.

    Args:
        latents: (N, C, h, w), one per stream of `layout`, at the noise level of `timesteps[0]`.
        scheduler: a DDIM scheduler on which `set_timesteps` was called.
        timesteps: the descending timesteps to run (a suffix of `scheduler.timesteps` for img2img).
        embeds: one prompt (and negative, with CFG) per stream.
        teacher: teacher forcing. For stream s, `teacher[s] = [z_0, ..., z_T]` with T = len(timesteps), as
            `invert` returns. Stream s starts at z_T and is overwritten with z_{T-1-i} after step i, so its rows
            feed the UNet (and the controls) the stored trajectory while the other streams run free; a fully
            teacher-forced loop returns z_0 exactly.

    Returns:
        (N, C, h, w) latents after the last step.
    """
    plan = BatchPlan.of(layout)
    if plan.streams != latents.shape[0]:
        raise ValueError(f"batch layout has {plan.streams} streams but {latents.shape[0]} latents were given")
    total = len(timesteps)
    check_teacher(teacher, latents, total)
    latents = force(latents.to(backbone.device, backbone.dtype), teacher, total)  # (N, C, h, w)
    conditioning = backbone.conditioning(embeds, plan.rows, backbone.image_size(latents))
    latent_size = (latents.shape[-2], latents.shape[-1])
    with attention_control(backbone.unet, controls) as state:
        for i, t in enumerate(timesteps):
            if cancel is not None:
                cancel.check(i, total, "denoise")
            state.update(
                index=i, total=total, timestep=int(t), branch="denoise", layout=layout, latent_size=latent_size
            )
            model_output = plan.predict(backbone, latents, t, conditioning, guidance_scale)  # (N, C, h, w)
            latents = scheduler.step(model_output, t, latents, return_dict=False)[0]  # (N, C, h, w), one level down
            latents = force(latents, teacher, total - 1 - i)
            if on_step is not None:
                on_step(StepEvent(index=i, total=total, timestep=int(t), latents=latents, branch="denoise"))
        if cancel is not None:
            cancel.check(total, total, "denoise")
    return latents
