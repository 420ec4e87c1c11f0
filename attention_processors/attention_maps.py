"""Record cross-attention maps of chosen text tokens, only at the sites where they are asked for.

Why: automatic masks (MasaCtrl's `MaskAuto`, FreeCustom without user masks) come from where a concept
token attends. Cross-attention over 77 text tokens is cheap to materialise (Lq × 77), so this control is
the one place that asks the processor for explicit probabilities; every other site stays fused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from attention_processors.control import AttentionCall, AttentionGroup, Control
from attention_processors.selection import SiteFilter, StepWindow
from attention_processors.sites import Site
from attention_processors.state import StepState


@dataclass
class CrossAttentionMaps(Control):
    """Sum, per batch row, the attention each query pays to `token_indices[row]`, over heads and sites.

    `token_indices` maps a batch row to the text positions of its concept (e.g. the token "star"); rows
    not in it are not recorded. Maps are accumulated at `size` (h, w) so sites of different resolution
    add up.
    """

    token_indices: dict[int, Sequence[int]]
    size: tuple[int, int]
    sites: SiteFilter = field(default_factory=lambda: SiteFilter(kind="cross"))
    steps: StepWindow = field(default_factory=StepWindow)
    needs_probs: bool = True
    _sum: dict[int, Tensor] = field(default_factory=dict, init=False, repr=False)
    _count: dict[int, int] = field(default_factory=dict, init=False, repr=False)

    def active(self, site: Site, state: StepState) -> bool:
        return site.is_cross and self.sites.matches(site) and self.steps.contains(state)

    def observe_probs(self, call: AttentionCall, group: AttentionGroup, probs: Tensor) -> None:
        h, w = call.spatial_size
        for j, row in enumerate(group.rows):
            tokens = self.token_indices.get(row)
            if not tokens:
                continue
            grid = probs[j, :, :, list(tokens)].sum(-1).mean(0).reshape(1, 1, h, w)  # [1, 1, h, w]
            grid = F.interpolate(grid, size=self.size, mode="bilinear", align_corners=False)[0, 0]
            self._sum[row] = self._sum.get(row, 0) + grid.float().cpu()
            self._count[row] = self._count.get(row, 0) + 1

    def maps(self) -> dict[int, Tensor]:
        """Mean map per recorded row, min-max normalised to [0, 1] ([h, w] each)."""
        out = {}
        for row, total in self._sum.items():
            mean = total / self._count[row]
            low, high = mean.min(), mean.max()
            out[row] = (mean - low) / (high - low) if high > low else torch.zeros_like(mean)
        return out
