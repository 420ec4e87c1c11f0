"""How the rows of a batch layout map onto the latent streams the denoising loop carries, and back.

Vocabulary: a *stream* is one latent the loop carries, one per distinct (role, item) of the batch layout.
A *row* is one UNet batch row; with CFG a stream has an "uncond" row and a "cond" row. The loop keeps
latents per stream (N, C, h, w) and builds the UNet batch (B, C, h, w) in the layout's row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attention_processors import BatchLayout
from attention_processors.layout import Half
from pipelines.backbone import Backbone, UNetConditioning


@dataclass(frozen=True)
class BatchPlan:
    """How the rows of a batch layout map onto latent streams, and back for classifier-free guidance."""

    layout: BatchLayout
    keys: tuple[tuple[str, int], ...]  # stream -> its (role, item), in order of first appearance in the layout
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
        return cls(layout, tuple(streams), rows, cond_rows, uncond_rows)

    @property
    def streams(self) -> int:
        return len(self.cond_rows)

    def streams_of(self, role: str) -> tuple[int, ...]:
        """The streams of `role`, in stream order: the latents a step-end hook acting on that role touches."""
        return tuple(s for s, (r, _) in enumerate(self.keys) if r == role)

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
