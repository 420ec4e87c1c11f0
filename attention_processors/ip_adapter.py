"""IP-Adapter's decoupled cross-attention (Ye et al. 2023, arXiv 2308.06721) as one composable control.

At every cross-attention site the text attention is kept and each image prompt adds its own branch:
`out = attn(Q, K_text, V_text) + Σ_i s_i · m_i ⊙ attn(Q, W_k^i c_i, W_v^i c_i)`, where `c_i` are the image
tokens of prompt i (its projection's output), `W_k^i / W_v^i` the adapter's `to_k_ip / to_v_ip` at this
site, `s_i` its scale at this site (per-block scales, InstantStyle) and `m_i` its optional region mask.

Each branch is one more `AttentionGroup` answering the same query rows with `weight = s_i · m_i`; the
processor sums the groups of a row, so the branch runs on the fused kernels and no attention map is built.
Unlike diffusers' `load_ip_adapter`, nothing replaces a processor: any other control composes in the call.

Classifier-free guidance: conditional rows attend to the image's tokens, unconditional rows to the
negative tokens (diffusers: the projection of zero embeddings for the base adapter, of the encoder's
output for a zero image for Plus / Full-face); both are computed by the pipeline and given here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from attention_processors.control import AttentionCall, AttentionGroup, Control
from attention_processors.ip_adapter_settings import IP_ADAPTER
from attention_processors.layout import Half
from attention_processors.selection import SiteFilter, StepWindow
from attention_processors.sites import Site
from attention_processors.state import StepState


@dataclass
class ImageBranch:
    """One image prompt through one adapter: its tokens, the adapter's per-site weights, scale and mask."""

    weights: Mapping[str, tuple[Tensor, Tensor]]  # site name -> (to_k_ip [inner, C], to_v_ip [inner, C])
    tokens: Tensor  # [T, C] image tokens for conditional rows
    negative_tokens: Tensor  # [T, C] tokens for unconditional rows
    # One scale everywhere, or {module-name prefix: scale} (diffusers' expanded per-block form: the last
    # matching prefix wins, sites matched by none get 0).
    scale: float | Mapping[str, float] = IP_ADAPTER.scale
    mask: Tensor | None = None  # [H0, W0] in [0, 1]; the branch acts where it is (resampled per site)

    def __post_init__(self) -> None:
        if self.tokens.ndim != 2 or self.tokens.shape != self.negative_tokens.shape:
            raise ValueError(
                f"image tokens must be [T, C] for both halves, got {tuple(self.tokens.shape)} and "
                f"{tuple(self.negative_tokens.shape)}"
            )
        if self.mask is not None and self.mask.ndim != 2:
            raise ValueError(f"an image-prompt mask must be 2-D [H, W], got shape {tuple(self.mask.shape)}")

    def scale_at(self, site: Site) -> float:
        if not isinstance(self.scale, Mapping):
            return float(self.scale)
        found = 0.0
        for prefix, value in self.scale.items():
            if site.name.startswith(prefix):
                found = float(value)
        return found


@dataclass
class IPAdapter(Control):
    """Decoupled cross-attention for any number of image prompts at once."""

    branches: Sequence[ImageBranch]
    steps: StepWindow = field(default_factory=lambda: StepWindow(IP_ADAPTER.start, IP_ADAPTER.end))
    sites: SiteFilter = field(default_factory=lambda: SiteFilter(kind="cross"))
    target_role: str = "target"  # rows that take the image prompts; other roles (references, sources) do not

    def __post_init__(self) -> None:
        self._kv: dict[tuple, tuple[Tensor, Tensor]] = {}  # (branch, site, row halves, device, dtype) -> K, V
        self._masks: dict[tuple, Tensor] = {}  # (branch, h, w, device, dtype) -> [1, 1, h*w, 1]; scalars too

    def active(self, site: Site, state: StepState) -> bool:
        if state.branch != "denoise" or not self.sites.matches(site) or not self.steps.contains(state):
            return False
        return any(site.name in b.weights and b.scale_at(site) != 0.0 for b in self.branches)

    def edit_groups(self, call: AttentionCall, groups: list[AttentionGroup]) -> list[AttentionGroup]:
        layout = call.layout
        rows = layout.indices(role=self.target_role)
        if not rows:
            return groups
        halves = tuple(layout.entries[r].half for r in rows)
        for number, branch in enumerate(self.branches):
            scale = branch.scale_at(call.site)
            if scale == 0.0 or call.site.name not in branch.weights:
                continue  # diffusers skips a zero-scale adapter: no term at all
            key, value = self._key_value(number, branch, call, halves)  # [n, H, T, D] each
            groups.append(AttentionGroup(rows, key, value, None, self._weight(number, branch, scale, call)))
        return groups

    def _key_value(
        self, number: int, branch: ImageBranch, call: AttentionCall, halves: tuple[Half, ...]
    ) -> tuple[Tensor, Tensor]:
        """Each row's image keys/values at this site (the negative tokens' for unconditional rows), memoised:
        tokens and weights are fixed for the run, so one group per branch answers both halves."""
        query = call.query
        memo = (number, call.site.name, halves, str(query.device), query.dtype)
        if memo not in self._kv:
            to_k, to_v = branch.weights[call.site.name]
            heads, head_dim = query.shape[1], query.shape[3]
            tokens = torch.stack(
                [branch.tokens if h == "cond" else branch.negative_tokens for h in halves]
            )  # [n, T, C]
            tokens = tokens.to(query.device, query.dtype)

            def project(weight: Tensor) -> Tensor:
                out = F.linear(tokens, weight.to(query.device, query.dtype))  # [n, T, H*D]
                return out.view(len(halves), -1, heads, head_dim).transpose(1, 2)  # [n, H, T, D]

            self._kv[memo] = (project(to_k), project(to_v))
        return self._kv[memo]

    def _weight(self, number: int, branch: ImageBranch, scale: float, call: AttentionCall) -> Tensor:
        """`scale`, times the mask on this site's grid: [1, 1, Lq, 1] or a scalar."""
        query = call.query
        if branch.mask is None:
            memo = (number, scale, str(query.device), query.dtype)
            if memo not in self._masks:  # one scalar tensor per run, not one per attention call
                self._masks[memo] = torch.tensor(scale, dtype=query.dtype, device=query.device)
            return self._masks[memo]
        h, w = call.spatial_size
        memo = (number, h, w, str(query.device), query.dtype)
        if memo not in self._masks:
            # diffusers' IPAdapterMaskProcessor.downsample: bicubic to the grid, not re-binarised.
            grid = F.interpolate(branch.mask[None, None].float(), size=(h, w), mode="bicubic")  # [1, 1, h, w]
            self._masks[memo] = grid.reshape(1, 1, h * w, 1).to(query.device, query.dtype)
        return scale * self._masks[memo]
