"""The one attention processor the studio installs on every `Attention` module.

It reproduces diffusers' `AttnProcessor2_0` step for step (projections through `attn.to_q/to_k/to_v/
to_out` so LoRA layers apply, `norm_cross`, `group_norm`, `spatial_norm`, `residual_connection`,
`rescale_output_factor`) and hands the attention product to `kernels.attention`. Controls that are active
at this site and step get to rewrite the computation; everything else stays on the fused kernel.

torch.compile: the forward reads only the controls chosen for this step (`active_controls`, set when the step
state is updated) and Python row lists, never the step index or a tensor's values, so a UNet compiled with these
processors has no graph break and recompiles only when the set of acting controls changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attention_processors.control import AttentionCall, AttentionGroup, Control
from attention_processors.sites import Site
from attention_processors.state import StepState
from kernels import attention


class StudioAttnProcessor:
    """Site-aware processor. Constructible with no arguments because diffusers' `load_ip_adapter` and
    `unload_ip_adapter` rebuild processors as `cls()`: such an instance behaves exactly like stock attention."""

    _attention_backend = None  # lets diffusers' `set_attention_backend` walk past us without error
    _parallel_config = None

    def __init__(
        self,
        site: Site | None = None,
        controls: Sequence[Control] = (),
        state: StepState | None = None,
        backend: str = "auto",
    ) -> None:
        self.site = site
        self.controls = tuple(controls)
        self.state = state if state is not None else StepState()
        self.backend = backend
        # The controls acting at this site for the current step, decided in `refresh` (called by the step state's
        # `update`), never inside the forward: under torch.compile the forward then reads a tuple that takes a
        # few distinct values per run (guards, not per-step recompiles) instead of branching on the step index.
        self.active_controls: tuple[Control, ...] = ()
        if self.site is not None and self.controls:
            self.state.listeners.append(self.refresh)
            if self.state.updates:
                self.refresh(self.state)

    def refresh(self, state: StepState) -> None:
        """Decide which controls act at this site for the step `state` now describes (eager, once per update)."""
        self.active_controls = tuple(c for c in self.controls if c.active(self.site, state))

    def detach(self) -> None:
        """Stop following the step state (the installation that made this processor is over)."""
        if self.refresh in self.state.listeners:
            self.state.listeners.remove(self.refresh)

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | tuple | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
    ) -> Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)  # [B, HW, C]

        image_embeds = None
        if isinstance(encoder_hidden_states, tuple):  # IP-Adapter: (text, [image tokens per adapter])
            encoder_hidden_states, image_embeds = encoder_hidden_states
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, key_len, _ = context.shape

        bias = None
        if attention_mask is not None:
            bias = attn.prepare_attention_mask(attention_mask, key_len, batch)
            bias = bias.view(batch, attn.heads, -1, bias.shape[-1])  # [B, H, 1|Lq, Lk]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)  # [B, Lq, H*D]
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key = attn.to_k(context)  # [B, Lk, H*D]
        value = attn.to_v(context)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)  # [B, H, Lq, D]
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)  # [B, H, Lk, D]
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        active = self.active_controls
        if active:
            call = AttentionCall(self.site, self.state, query, key, value, attn, image_embeds)
            output = self._controlled(call, active, bias)
        else:
            output = attention(query, key, value, bias, backend=self.backend)  # [B, H, Lq, D]

        hidden_states = output.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _controlled(self, call: AttentionCall, active: Sequence[Control], bias: Tensor | None) -> Tensor:
        rows = list(range(call.query.shape[0]))
        groups = [AttentionGroup(rows, call.key, call.value, bias)]
        for control in active:
            groups = control.edit_groups(call, groups)
        output = run_groups(call.query, groups, self.backend)
        observers = [c for c in active if c.needs_probs]
        if observers:
            for group in groups:
                probs = attention_probs(call.query[group.rows], group.key, group.bias)
                for control in observers:
                    control.observe_probs(call, group, probs)
        for control in active:
            output = control.edit_output(call, output)
        return output


def run_groups(query: Tensor, groups: Sequence[AttentionGroup], backend: str = "auto") -> Tensor:
    """Answer every query row from the groups that cover it; overlapping groups add up with their weights."""
    batch = query.shape[0]
    everyone = list(range(batch))
    if len(groups) == 1 and groups[0].weight is None and groups[0].rows == everyone:
        only = groups[0]
        return attention(query, only.key, only.value, only.bias, backend=backend)  # [B, H, Lq, D]
    # Coverage is checked on the Python row lists (a tensor check would sync and break a compiled graph).
    missing = sorted(set(everyone).difference(*(group.rows for group in groups)))
    if missing:
        raise ValueError(f"attention groups leave batch rows {missing} unanswered")
    output = torch.zeros_like(query)  # [B, H, Lq, D]
    for group in groups:
        index = torch.as_tensor(group.rows, dtype=torch.long, device=query.device)
        part = attention(query.index_select(0, index), group.key, group.value, group.bias, backend=backend)
        if group.weight is not None:
            part = part * group.weight
        output.index_add_(0, index, part.to(output.dtype))
    return output


def attention_probs(query: Tensor, key: Tensor, bias: Tensor | None) -> Tensor:
    """Explicit softmax(q kᵀ/√d + bias) [n, H, Lq, Lk], materialised only for controls that ask for it."""
    logits = torch.einsum("bhqd,bhkd->bhqk", query.float(), key.float()) * query.shape[-1] ** -0.5
    if bias is not None:
        logits = logits + (bias[:, None, None, :] if bias.ndim == 2 else bias).float()
    return logits.softmax(dim=-1)
