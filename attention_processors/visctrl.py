"""VisCtrl (arXiv 2406.06258): view-iterative self-attention control, and Feature Gradual Sampling.

The edited target's queries take the reference's keys and values, in both CFG halves, on nearly every
self-attention block (the official code uses blocks 1–15 of 16: all but the first), from 20% of the
schedule on (step 2 of 10 on the first pass, step 1 of 5 on later passes). The reference row is
teacher-forced from its DDIM-inversion trajectory by the pipeline; this control only routes attention.

Feature Gradual Sampling (FGS) is the paper's multi-view extension, given there only as "randomly sampling
latent features from multiple references and weighting updates with α". Our design, for a sequence of
views edited together in one batch (view k = target item k):
- view 0 attends to the reference alone, exactly as single-image VisCtrl;
- view k > 0 blends two attentions: (1 − α) · attn(Q_k, K_ref, V_ref) + α · attn(Q_k, K_prev, V_prev), where
  K_prev/V_prev are tokens sampled from the views already edited (0 … k−1) in the same half and step,
  `sample_fraction` of each view's tokens, drawn from a generator seeded by (seed, step, site), so a run is
  deterministic and every view sees the same sample positions at a given site and step.
The reference keeps the appearance; the sampled earlier views pull later views towards the same edit,
which is what makes the views consistent with each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from attention_processors.control import AttentionCall, AttentionGroup, take_rows
from attention_processors.mutual_self_attention import MutualSelfAttention
from attention_processors.selection import SiteFilter, StepWindow
from attention_processors.settings import VISCTRL, VisCtrlSettings  # noqa: F401 - re-exported
from attention_processors.sites import Site
from attention_processors.state import StepState


def visctrl_sites() -> SiteFilter:
    """Every self-attention block except the first one to run (the official `layer_idx = range(1, 16)`)."""
    return SiteFilter(kind="self", min_order=1)


def visctrl_control(start: float = VISCTRL.start) -> MutualSelfAttention:
    """The edited target ('target') queries the reference inversion row ('reference') in both halves."""
    return MutualSelfAttention(
        steps=StepWindow(start, 1.0), sites=visctrl_sites(), source_role="reference", target_role="target"
    )


@dataclass
class FeatureGradualSampling(MutualSelfAttention):
    alpha: float = VISCTRL.alpha  # weight of the already-edited views against the reference
    sample_fraction: float = VISCTRL.sample_fraction  # share of each earlier view's tokens sampled per site and step
    seed: int = 0
    steps: StepWindow = field(default_factory=lambda: StepWindow(VISCTRL.start, 1.0))
    sites: SiteFilter = field(default_factory=visctrl_sites)
    source_role: str = "reference"
    target_role: str = "target"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0.0 < self.sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {self.sample_fraction}")
        if self.masks is not None:
            raise ValueError("feature gradual sampling does not take masks; confine the edit in the pipeline")
        self._picked: dict[int, torch.Tensor] = {}  # site order -> [views - 1, take] token indices for this step

    def prepare(self, sites: Sequence[Site], state: StepState, device: torch.device) -> None:
        """Draw this step's token samples eagerly, into one tensor per site that is updated in place.

        Why here: a seeded `torch.Generator` cannot be traced, and a forward that branched on the step index
        would recompile every step. The forward reads a tensor whose values change but whose shape does not.
        Draws equal the ones the forward used to make: generator seeded by (seed, step, site order), one
        permutation per earlier view in view order.
        """
        if state.layout is None:
            return
        views = max(len(state.layout.indices(role=self.target_role, half=half)) for half in ("uncond", "cond"))
        for site in sites:
            if views < 2 or not self.active(site, state):
                continue
            h, w = site.spatial_size(state.latent_size)
            tokens = h * w
            take = max(1, round(self.sample_fraction * tokens))
            generator = torch.Generator().manual_seed(hash((self.seed, state.index, site.order)) % 2**63)
            drawn = torch.stack([torch.randperm(tokens, generator=generator)[:take] for _ in range(views - 1)])
            held = self._picked.get(site.order)
            if held is not None and held.shape == drawn.shape and held.device == torch.device(device):
                held.copy_(drawn)  # [views - 1, take]
            else:
                self._picked[site.order] = drawn.to(device)

    def edit_groups(self, call: AttentionCall, groups: list[AttentionGroup]) -> list[AttentionGroup]:
        groups = super().edit_groups(call, groups)  # every view now attends to the reference
        if self.alpha == 0.0:
            return groups
        layout = call.layout
        for half in self.halves:
            views = layout.indices(role=self.target_role, half=half)
            views.sort(key=lambda r: layout.entries[r].item)
            for k, row in enumerate(views[1:], start=1):
                groups, own = take_rows(groups, [row])
                key, value = self._sample_previous(call, views[:k])
                weight = torch.tensor(self.alpha, dtype=key.dtype, device=key.device)
                for group in own:  # the reference answer, now scaled by (1 - α)
                    scale = 1 - weight if group.weight is None else group.weight * (1 - weight)
                    groups.append(AttentionGroup(group.rows, group.key, group.value, group.bias, scale))
                groups.append(AttentionGroup([row], key, value, None, weight))
        return groups

    def _sample_previous(self, call: AttentionCall, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        drawn = self._picked.get(call.site.order)
        if drawn is None or drawn.shape[0] < len(rows):  # no `prepare` for this call (processor used on its own)
            self.prepare([call.site], call.state, call.key.device)
            drawn = self._picked[call.site.order]
        keys, values = [], []
        for j, r in enumerate(rows):
            picked = drawn[j]  # [take] token indices, drawn in `prepare`
            keys.append(call.key[r : r + 1, :, picked])  # [1, H, take, D]
            values.append(call.value[r : r + 1, :, picked])
        return torch.cat(keys, dim=2), torch.cat(values, dim=2)
