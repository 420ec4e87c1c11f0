"""FreeCustom's multi-reference self-attention (MRSA, CVPR 2024).

The generated image's queries attend to its own keys and to every reference's keys,
`[own; ref_1 … ref_R]`, with an additive bias on each reference's keys: `w_i` inside its concept mask and
`-inf` outside (the official code adds the weight to the logits; the paper writes a product). Own keys get
no bias. `style_fidelity` (default 1, from ControlNet's reference-only) blends the unconditional half with
plain self-attention: out_u = (1 − sf)·MRSA_u + sf·SelfAttn_u, so at sf = 1 the references need only the
conditional pass.

Because the bias depends only on the key, masked-out keys are dropped rather than masked: the kernel sees
`L + Σ|mask_i|` keys with a constant weight per reference, and no L×L bias is ever built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from attention_processors.control import AttentionCall, AttentionGroup, Control, take_rows
from attention_processors.masks import TokenMaskCache
from attention_processors.selection import SiteFilter, StepWindow, decoder_self_attention
from attention_processors.settings import FREECUSTOM, FreeCustomSettings  # noqa: F401 - re-exported
from attention_processors.sites import Site
from attention_processors.state import StepState


@dataclass
class MultiReferenceSelfAttention(Control):
    masks: Sequence[Tensor]  # one [H0, W0] concept mask per reference (any size; resampled per site)
    weights: Sequence[float] | float = FREECUSTOM.mask_weight
    style_fidelity: float = FREECUSTOM.style_fidelity
    steps: StepWindow = field(default_factory=StepWindow)  # all steps
    sites: SiteFilter = field(default_factory=decoder_self_attention)
    target_role: str = "target"
    reference_role: str = "reference"

    def __post_init__(self) -> None:
        count = len(self.masks)
        weights = [float(self.weights)] * count if isinstance(self.weights, (int, float)) else list(self.weights)
        if len(weights) != count:
            raise ValueError(f"{len(weights)} mask weights for {count} references")
        if not 0.0 <= self.style_fidelity <= 1.0:
            raise ValueError(f"style_fidelity must be in [0, 1], got {self.style_fidelity}")
        for i, m in enumerate(self.masks):
            if m.ndim != 2:
                raise ValueError(f"reference {i} mask must be 2-D [H, W], got shape {tuple(m.shape)}")
        self._weights = weights
        self._caches = [TokenMaskCache(m) for m in self.masks]

    def active(self, site: Site, state: StepState) -> bool:
        return state.branch == "denoise" and self.sites.matches(site) and self.steps.contains(state)

    def prepare(self, sites: Sequence[Site], state: StepState, device: torch.device) -> None:
        """Foreground token indices at every active site's grid, computed eagerly (their count is data)."""
        for site in sites:
            if self.active(site, state):
                size = site.spatial_size(state.latent_size)
                for cache in self._caches:
                    cache.indices_at(size, device)

    def edit_groups(self, call: AttentionCall, groups: list[AttentionGroup]) -> list[AttentionGroup]:
        layout = call.layout
        for half in ("uncond", "cond"):
            targets = layout.indices(role=self.target_role, half=half)
            if not targets:
                continue
            mrsa_share = 1.0 if half == "cond" or not layout.has_cfg else 1.0 - self.style_fidelity
            if mrsa_share == 0.0 or not self._caches:
                continue  # plain self-attention: the groups already say so
            groups, own = take_rows(groups, targets)
            if any(group.bias is not None for group in own):
                raise ValueError("multi-reference self-attention cannot extend an attention mask on own keys")
            refs_key, refs_value, refs_bias = self._reference_tokens(call, half)
            for group in own:
                n = len(group.rows)
                key = torch.cat([group.key, refs_key.expand(n, -1, -1, -1)], dim=2)  # [n, H, L + Lr, D]
                value = torch.cat([group.value, refs_value.expand(n, -1, -1, -1)], dim=2)
                own_bias = torch.zeros(n, group.key.shape[2], dtype=key.dtype, device=key.device)
                mrsa = AttentionGroup(group.rows, key, value)
                mrsa = mrsa.with_key_bias(torch.cat([own_bias, refs_bias.expand(n, -1)], dim=1))  # [n, L + Lr]
                if mrsa_share < 1.0:
                    mrsa.weight = torch.tensor(mrsa_share, dtype=key.dtype, device=key.device)
                    plain = AttentionGroup(
                        group.rows, group.key, group.value, None, mrsa.weight.new_tensor(1 - mrsa_share)
                    )
                    groups += [mrsa, plain]
                else:
                    groups.append(mrsa)
        return groups

    def _reference_tokens(self, call: AttentionCall, half: str) -> tuple[Tensor, Tensor, Tensor]:
        """Foreground keys/values of every reference in this half, concatenated: [1, H, Lr, D] ×2 and bias [1, Lr]."""
        layout = call.layout
        size = call.spatial_size
        keys, values, biases = [], [], []
        for i, (cache, weight) in enumerate(zip(self._caches, self._weights, strict=False)):
            rows = layout.indices(role=self.reference_role, half=half, item=i)
            if len(rows) != 1:
                raise ValueError(
                    f"multi-reference self-attention needs reference {i} in the {half} half of the batch; "
                    f"the layout has {len(rows)} such rows"
                )
            fg = cache.indices_at(size, call.key.device)  # [Lr_i] foreground token indices
            keys.append(call.key[rows[0] : rows[0] + 1, :, fg])  # [1, H, Lr_i, D]
            values.append(call.value[rows[0] : rows[0] + 1, :, fg])
            biases.append(torch.full((1, fg.numel()), weight, dtype=call.key.dtype, device=call.key.device))
        return torch.cat(keys, dim=2), torch.cat(values, dim=2), torch.cat(biases, dim=1)
