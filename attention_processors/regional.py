"""RAG's regional soft refinement (Chen et al., "Region-Aware Text-to-Image Generation via Hard Binding and
Soft Refinement", ICCV 2025) at a UNet's cross-attention sites.

At every cross-attention site and step, each region's queries also attend to the region's own prompt, and the
result is blended with the global cross-attention by δ:

    out(q) = (1 − δ·[c(q) > 0]) · attn(q, K_g, V_g) + δ · Σ_r m_r(q) / max(c(q), 1) · attn(q, K_r, V_r)

where `m_r(q)` is 1 when query token q lies in region r (its mask resampled to the site's grid), `c(q) = Σ_r
m_r(q)` counts the regions covering q (overlapping regions share their part equally), and K_r, V_r are the
region prompt's embeddings through this site's own `to_k` / `to_v` (so LoRA layers apply). Outside every
region the output is the global cross-attention unchanged; a region that covers no token of a coarse site
acts nowhere there.

The official code (FLUX) runs the block's joint attention once per region and tiles the crops back. Here
each region is one more `AttentionGroup` answering the same batch rows, weighted per query by `δ·m_r/c`,
and the global groups are weighted by `1 − δ·[c > 0]`; the processor sums the groups, so everything stays
on the fused kernels and no attention map is built. Only the conditional rows of the target role take the
regions; the unconditional half (the negative prompt) stays plain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from attention_processors.control import AttentionCall, AttentionGroup, Control, take_rows
from attention_processors.masks import TokenMaskCache
from attention_processors.selection import SiteFilter, StepWindow
from attention_processors.settings import REGIONAL
from attention_processors.sites import Site
from attention_processors.state import StepState


@dataclass
class TextRegion:
    """One region: its prompt's text embeddings and where it is."""

    embeds: Tensor  # [L, C] the region prompt's encoder hidden states (the same encoder as the global prompt)
    mask: Tensor  # [H0, W0] in {0, 1}, any size (the latent grid for boxes); resampled per site

    def __post_init__(self) -> None:
        if self.embeds.ndim != 2:
            raise ValueError(f"region embeddings must be [L, C], got shape {tuple(self.embeds.shape)}")
        if self.mask.ndim != 2:
            raise ValueError(f"a region mask must be 2-D [H, W], got shape {tuple(self.mask.shape)}")


@dataclass
class RegionalCrossAttention(Control):
    """Soft refinement: regional prompts blended into the global cross-attention by `delta`."""

    regions: Sequence[TextRegion]
    delta: float = REGIONAL.delta
    steps: StepWindow = field(default_factory=StepWindow)  # the official code refines at every step
    sites: SiteFilter = field(default_factory=lambda: SiteFilter(kind="cross"))
    target_role: str = "target"

    def __post_init__(self) -> None:
        if not 0.0 <= self.delta <= 1.0:
            raise ValueError(f"delta must be in [0, 1], got {self.delta}")
        self._caches = [TokenMaskCache(region.mask) for region in self.regions]
        self._kv: dict[tuple, tuple[Tensor, Tensor]] = {}  # (region, site, device, dtype) -> K, V [1, H, L, D]
        self._coverage: dict[
            tuple[int, int], tuple[bool, tuple[bool, ...]]
        ] = {}  # grid -> (δ<1 somewhere, per region)

    def active(self, site: Site, state: StepState) -> bool:
        return (
            state.branch == "denoise"
            and bool(self.regions)
            and self.delta > 0.0
            and self.sites.matches(site)
            and self.steps.contains(state)
        )

    def prepare(self, sites: Sequence[Site], state: StepState, device: torch.device) -> None:
        """Which regions reach each active site's grid, decided eagerly: the masks are data, and a forward that
        branched on them would sync and break a compiled graph. The forward reads the Python answers."""
        for site in sites:
            if self.active(site, state):
                self._covers(site.spatial_size(state.latent_size), device)

    def _covers(self, size: tuple[int, int], device: torch.device) -> tuple[bool, tuple[bool, ...]]:
        """(whether some query keeps part of the global attention, whether each region covers a token)."""
        if size not in self._coverage:
            masks = [cache.at(size, device) for cache in self._caches]  # R x [Lq]
            count = torch.stack(masks).sum(dim=0)  # [Lq]
            keep_global = bool((1.0 - self.delta * (count > 0).float()).any())
            self._coverage[size] = (keep_global, tuple(bool(m.any()) for m in masks))
        return self._coverage[size]

    def edit_groups(self, call: AttentionCall, groups: list[AttentionGroup]) -> list[AttentionGroup]:
        rows = call.layout.indices(role=self.target_role, half="cond")
        if not rows:
            return groups
        size = call.spatial_size
        device, dtype = call.query.device, call.query.dtype
        keep_global, covering = self._covers(size, device)
        if not any(covering):
            return groups  # no region reaches this site's grid: global attention everywhere
        masks = torch.stack([cache.at(size, device) for cache in self._caches]).to(dtype)  # [R, Lq]
        count = masks.sum(dim=0)  # [Lq] regions covering each query token
        share = self.delta / count.clamp(min=1.0)  # [Lq]
        keep = 1.0 - self.delta * (count > 0).to(dtype)  # [Lq] the global attention's part
        rest, own = take_rows(groups, rows)
        for group in own if keep_global else ():  # δ = 1 over the whole grid: the global part is 0
            weight = keep.view(1, 1, -1, 1) if group.weight is None else group.weight * keep.view(1, 1, -1, 1)
            rest.append(replace(group, weight=weight))  # [1|n, 1, Lq, 1]
        n = len(rows)
        for r, mask in enumerate(masks):
            if not covering[r]:
                continue  # this region covers nothing at this site
            key, value = self._key_value(r, call)  # [1, H, L, D] each
            weight = (share * mask).view(1, 1, -1, 1)  # [1, 1, Lq, 1]
            rest.append(AttentionGroup(rows, key.expand(n, -1, -1, -1), value.expand(n, -1, -1, -1), None, weight))
        return rest

    def _key_value(self, r: int, call: AttentionCall) -> tuple[Tensor, Tensor]:
        """Region r's keys and values at this site, memoised: embeddings and projections are fixed for the run."""
        query, attn = call.query, call.module
        memo = (r, call.site.name, str(query.device), query.dtype)
        if memo not in self._kv:
            context = self.regions[r].embeds[None].to(query.device, query.dtype)  # [1, L, C]
            if attn.norm_cross:
                context = attn.norm_encoder_hidden_states(context)
            heads, head_dim = query.shape[1], query.shape[3]

            def heads_of(states: Tensor) -> Tensor:
                return states.view(1, -1, heads, head_dim).transpose(1, 2)  # [1, H, L, D]

            key, value = heads_of(attn.to_k(context)), heads_of(attn.to_v(context))
            if attn.norm_k is not None:
                key = attn.norm_k(key)
            self._kv[memo] = (key, value)
        return self._kv[memo]
