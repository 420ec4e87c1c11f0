"""Mutual self-attention (MasaCtrl, ICCV 2023): a target image queries a source image's keys and values.

In self-attention, the target's queries attend to the source's K/V from the same CFG half, at chosen sites
and from a start step, so the target keeps the source's appearance while its own prompt sets the layout.
Defaults: decoder self-attention at the two highest resolutions, from step 4 of 50 (as fractions).

The masked variant (MasaCtrl's `MutualSelfAttentionControlMask`) computes two softmaxes over the source's
keys, one restricted to the source's foreground and one to its background, and blends them with the target
mask: out = M_t · softmax_fg + (1 − M_t) · softmax_bg. Here that is two weighted attention groups with
per-key `-inf` biases, never an attention map.

VisCtrl uses the same control with its own sites, steps and roles (see `visctrl.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from attention_processors.control import AttentionCall, AttentionGroup, Control, take_rows
from attention_processors.masks import TokenMaskCache
from attention_processors.selection import SiteFilter, StepWindow, decoder_self_attention
from attention_processors.settings import MASACTRL, MasaCtrlSettings  # noqa: F401 - re-exported
from attention_processors.sites import Site
from attention_processors.state import StepState


@dataclass
class MaskPair:
    """Foreground masks [H0, W0] (any size; resampled per site) of the source and of the target."""

    source: Tensor
    target: Tensor

    def __post_init__(self) -> None:
        for name, m in (("source", self.source), ("target", self.target)):
            if m.ndim != 2:
                raise ValueError(f"{name} mask must be 2-D [H, W], got shape {tuple(m.shape)}")
            if not bool((m > 0.5).any()):
                raise ValueError(f"{name} mask is empty: mark the object's pixels")


@dataclass
class MutualSelfAttention(Control):
    steps: StepWindow = field(default_factory=lambda: StepWindow(MASACTRL.start, 1.0))
    sites: SiteFilter = field(default_factory=lambda: decoder_self_attention(MASACTRL.levels))
    source_role: str = "source"
    target_role: str = "target"
    halves: tuple[str, ...] = ("uncond", "cond")  # MasaCtrl controls both CFG halves, each from its own half
    masks: MaskPair | None = None

    def __post_init__(self) -> None:
        self._source_mask = TokenMaskCache(self.masks.source) if self.masks else None
        self._target_mask = TokenMaskCache(self.masks.target) if self.masks else None

    def active(self, site: Site, state: StepState) -> bool:
        return state.branch == "denoise" and self.sites.matches(site) and self.steps.contains(state)

    def prepare(self, sites: Sequence[Site], state: StepState, device: torch.device) -> None:
        """The masks at every active site's grid, resampled eagerly so the forward only reads them."""
        if self.masks is None:
            return
        for site in sites:
            if self.active(site, state):
                size = site.spatial_size(state.latent_size)
                self._source_mask.at(size, device)
                self._target_mask.at(size, device)

    def edit_groups(self, call: AttentionCall, groups: list[AttentionGroup]) -> list[AttentionGroup]:
        layout = call.layout
        layout.require(self.source_role, self.target_role)
        sources = layout.count(self.source_role)
        for half in self.halves:
            targets = layout.indices(role=self.target_role, half=half)
            if not targets:
                continue
            groups, _ = take_rows(groups, targets)
            for row in targets:
                item = layout.entries[row].item
                # One source drives every target, or source i drives target i when there are as many.
                source = layout.index(self.source_role, half, item if sources > 1 else 0)
                groups += self._answer(call, row, source)
        return groups

    def _answer(self, call: AttentionCall, row: int, source: int) -> list[AttentionGroup]:
        key = call.key[source : source + 1]  # [1, H, Lk, D]
        value = call.value[source : source + 1]
        if self.masks is None:
            return [AttentionGroup([row], key, value)]
        size = call.spatial_size
        fg_keys = self._source_mask.at(size, key.device)[None]  # [1, Lk]
        fg_queries = self._target_mask.at(size, key.device)[None, None, :, None]  # [1, 1, Lq, 1]
        neg_inf = torch.tensor(float("-inf"), device=key.device, dtype=key.dtype)
        zero = torch.zeros((), device=key.device, dtype=key.dtype)
        fg_bias: Tensor = torch.where(fg_keys > 0, zero, neg_inf)  # [1, Lk]
        bg_bias: Tensor = torch.where(fg_keys > 0, neg_inf, zero)
        return [
            AttentionGroup([row], key, value, fg_bias, fg_queries.to(key.dtype)),
            AttentionGroup([row], key, value, bg_bias, (1 - fg_queries).to(key.dtype)),
        ]
