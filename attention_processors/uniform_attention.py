"""Uniform cross-attention (Uniform Attention Maps, WACV 2025, arXiv 2411.19652).

UAM replaces every cross-attention map of an auxiliary branch by the uniform map 1/L over the L text
tokens, so each image token receives the same text feature: the mean of the values, with no spatial
attention to the prompt. The paper uses it for DDIM inversion and for the reconstruction branch that
keeps the unedited area of an edit.

The mean of V needs no map and no softmax. The rows it answers get one attention group with a single key
whose value is mean_j V_j: softmax over one key is 1, so the fused kernel returns that mean at every query
(and never forms an Lq x L map). Any text attention mask is ignored, as the official uniform map spans all
tokens. Rows are chosen by role, so one batch can hold uniform rows beside ordinary ones (UAM editing runs
its auxiliary branch beside the edit); `roles=None` makes every row uniform (UAM inversion).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from attention_processors.control import AttentionCall, AttentionGroup, Control, take_rows
from attention_processors.selection import SiteFilter, StepWindow
from attention_processors.sites import Site
from attention_processors.state import StepState


@dataclass
class UniformCrossAttention(Control):
    roles: tuple[str, ...] | None = None  # rows of these roles get uniform maps; None: every row
    sites: SiteFilter = field(default_factory=lambda: SiteFilter(kind="cross"))
    steps: StepWindow = field(default_factory=StepWindow)

    def active(self, site: Site, state: StepState) -> bool:
        return site.is_cross and self.sites.matches(site) and self.steps.contains(state)

    def edit_groups(self, call: AttentionCall, groups: list[AttentionGroup]) -> list[AttentionGroup]:
        if self.roles is None:
            rows = list(range(call.query.shape[0]))
        else:
            rows = [r for r, row in enumerate(call.layout.entries) if row.role in self.roles]
        if not rows:
            return groups
        groups, _ = take_rows(groups, rows)
        index = torch.as_tensor(rows, dtype=torch.long, device=call.value.device)
        value = call.value.index_select(0, index).mean(dim=2, keepdim=True)  # [n, H, 1, D]: the uniform map's output
        key = torch.zeros_like(value)  # [n, H, 1, D]: one key, so every query's weight on `value` is exactly 1
        return [*groups, AttentionGroup(rows, key, value)]
