"""UAM's adaptive mask mixing of x̂0, as a step-end hook (Uniform Attention Maps, arXiv 2411.19652).

Why: an edit's source and target branches drift from the input image even where the prompt changes nothing.
UAM keeps a third, auxiliary branch that reconstructs the input with uniform cross-attention maps, and for
the last steps (timestep below a cutoff) rebuilds the edit's latents from a mixed x̂0: where the source and
target predictions agree the target takes the auxiliary branch's x̂0, where they differ it keeps its own.

Per item and step (the official code's behaviour, by our reading):
- Δ = x̂0_src − x̂0_tgt in latent space; λ = the q-quantile of |Δ| over the item's latent, with q rising
  linearly from 0 at the first step to `quantile` at the last;
- edit = |Δ − clamp(Δ, −λ, λ)| > λ, i.e. |Δ| > 2λ (the official threshold), per latent channel, grown by a
  (2r+1)² max-pool (the official dilation, r = 1); keep = 1 − edit;
- x̂0_tgt ← x̂0_tgt·edit + x̂0_uni·keep and x̂0_src ← x̂0_src·keep + x̂0_uni·edit (the official README's algorithm);
- the two streams' latents are rebuilt with the deterministic DDIM update from the mixed x̂0 and the step's
  own noise prediction. The auxiliary stream is left as it stepped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pipelines.hooks import StepEnd
from pipelines.settings import UNIFORM_EDIT
from pipelines.steps import as_epsilon


def edit_mask(delta: Tensor, quantile: float, dilate: int) -> Tensor:
    """The edited area (C, h, w) in {0, 1} of one item, from Δ = x̂0_src − x̂0_tgt (C, h, w)."""
    threshold = torch.quantile(delta.abs().flatten().float(), quantile).to(delta.dtype)  # λ, a scalar
    shrunk = delta - delta.clamp(-threshold, threshold)  # (C, h, w): soft-thresholded Δ
    edited = (shrunk.abs() > threshold).to(delta.dtype)  # (C, h, w): |Δ| > 2λ
    if dilate > 0:
        edited = F.max_pool2d(edited[None], 2 * dilate + 1, stride=1, padding=dilate)[0]  # (C, h, w)
    return edited


@dataclass
class UniformMapMixing:
    """The step-end hook: mixes x̂0 of every (source, target, uniform) stream triple below `cutoff`.

    `triples[i]` = (source stream, target stream, uniform stream) of edit i; `prediction_type` is the
    model's, to read the step's noise. Denoising with DDIM only (the latents are rebuilt with its update).
    """

    triples: tuple[tuple[int, int, int], ...]
    prediction_type: str
    quantile: float = UNIFORM_EDIT.quantile
    cutoff: int = UNIFORM_EDIT.cutoff
    dilate: int = UNIFORM_EDIT.dilate

    def __post_init__(self) -> None:
        if not 0.0 <= self.quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {self.quantile}")
        if self.dilate < 0:
            raise ValueError(f"dilate must be >= 0, got {self.dilate}")

    def quantile_at(self, index: int, total: int) -> float:
        """q of step `index`: linear from 0 at the first step to `quantile` at the last."""
        return self.quantile * index / (total - 1) if total > 1 else self.quantile

    def __call__(self, end: StepEnd) -> Tensor | None:
        if end.branch != "denoise" or not 0 < end.timestep < self.cutoff:
            return None
        scheduler = end.scheduler
        alphas = scheduler.alphas_cumprod
        alpha = alphas[end.timestep].to(end.sample)
        prev = end.timestep - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        alpha_prev = (alphas[prev] if prev >= 0 else scheduler.final_alpha_cumprod).to(end.sample)
        noise = as_epsilon(end.model_output, end.sample, alpha, self.prediction_type)  # (N, C, h, w)
        q = self.quantile_at(end.index, end.total)
        latents = end.latents.clone()  # (N, C, h, w)
        for source, target, uniform in self.triples:
            x0_src, x0_tgt, x0_uni = end.pred_x0[source], end.pred_x0[target], end.pred_x0[uniform]  # (C, h, w)
            edited = edit_mask(x0_src - x0_tgt, q, self.dilate)  # (C, h, w)
            kept = 1 - edited
            mixed = {target: x0_tgt * edited + x0_uni * kept, source: x0_src * kept + x0_uni * edited}
            for stream, x0 in mixed.items():
                latents[stream] = alpha_prev.sqrt() * x0 + (1 - alpha_prev).sqrt() * noise[stream]  # (C, h, w)
        return latents
