"""What a method may change inside one attention call, and the objects it sees.

A control is a small object with optional hooks. The processor computes attention as a list of
*groups*: each group answers some query rows of the batch with its own keys, values and additive bias.
With no control the list is one group, every row attending to its own keys, i.e. stock attention.
Methods rewrite the groups (swap in a source's K/V, append reference K/V with a per-key bias, add image
tokens), or rewrite the output. Groups that answer the same row are summed with their `weight`, which
expresses masked blends (MasaCtrl's foreground/background softmaxes, FreeCustom's style fidelity) without
ever materialising an attention map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from torch import Tensor

from attention_processors.layout import BatchLayout
from attention_processors.sites import Site
from attention_processors.state import StepState


@dataclass
class AttentionGroup:
    rows: list[int]  # batch rows whose queries this group answers
    key: Tensor  # [len(rows), H, Lk, D]
    value: Tensor  # [len(rows), H, Lk, D]
    bias: Tensor | None = None  # None | per-key [len(rows), Lk] | full, broadcastable to [len(rows), H, Lq, Lk]
    weight: Tensor | None = None  # [len(rows), 1, Lq, 1] or scalar; output multiplier where groups overlap

    def with_key_bias(self, key_bias: Tensor) -> AttentionGroup:
        """Add a per-key bias [len(rows), Lk], keeping whatever bias the group already had."""
        if self.bias is None or self.bias.ndim == 2:
            bias = key_bias if self.bias is None else self.bias + key_bias
        else:
            bias = self.bias + key_bias[:, None, None, :]  # per-key onto full: [n, H|1, Lq|1, Lk]
        return replace(self, bias=bias)


@dataclass
class AttentionCall:
    """Everything a control may read about the current attention call."""

    site: Site
    state: StepState
    query: Tensor  # [B, H, Lq, D]
    key: Tensor  # [B, H, Lk, D] the module's own keys (self: from the image tokens; cross: from the text)
    value: Tensor  # [B, H, Lk, D]
    module: torch.nn.Module  # the diffusers `Attention` (for its projections, heads, norms)
    image_embeds: list[Tensor] | None = None  # IP-Adapter image tokens when diffusers passes a tuple
    scratch: dict[str, object] = field(default_factory=dict)  # per-call memo shared by the controls

    @property
    def layout(self) -> BatchLayout:
        if self.state.layout is None:
            raise ValueError(f"attention control at {self.site.name} needs a batch layout, but the pipeline set none")
        return self.state.layout

    @property
    def spatial_size(self) -> tuple[int, int]:
        """(h, w) of the query grid; queries are the image tokens at self- and cross-attention alike."""
        if self.state.latent_size is None:
            raise ValueError(f"attention control at {self.site.name} needs the latent size in the step state")
        h, w = self.site.spatial_size(self.state.latent_size)
        if h * w != self.query.shape[2]:
            raise ValueError(f"site {self.site.name}: {self.query.shape[2]} queries do not form a {h}x{w} grid")
        return h, w


class Control:
    """Base class of every method. A concrete control must say where and when it acts (`active`); the
    other hooks are optional and default to changing nothing.

    Why `active` is required: a control whose `active` is inherited would install, run and change nothing,
    a silent no-op that looks like a method that does not work. So a subclass that does not override it
    fails when the class is created. A helper base meant only to be subclassed says so with
    `class Helper(Control, abstract=True)`; abstract controls (and `Control` itself) are refused at install.
    """

    needs_probs: bool = False  # True only when the method must read attention probabilities
    is_abstract: ClassVar[bool] = True  # set per class by __init_subclass__; only concrete controls install

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.is_abstract = abstract
        if not abstract and cls.active is Control.active:
            raise TypeError(
                f"control {cls.__qualname__} does not override `active(site, state)`, so it would act nowhere; "
                f"define where and when it acts, or declare a helper base with "
                f"`class {cls.__name__}(..., abstract=True)`"
            )

    def active(self, site: Site, state: StepState) -> bool:
        """Whether this control acts at `site` during the current call (selection by site and step).

        Asked once per site when the pipeline updates the step state, not inside the UNet forward, so it must
        depend only on `site`, `state` and the control's settings; a compiled UNet then never branches on the step.
        """
        raise NotImplementedError(f"{type(self).__qualname__} is an abstract control: it does not define `active`")

    def prepare(self, sites: Sequence[Site], state: StepState, device: torch.device) -> None:
        """Fill per-run caches for this step before the UNet runs (eager, outside any compiled graph).

        Why: anything whose shape depends on data (a mask's foreground token indices) breaks a torch.compile
        graph when first computed inside the forward; computed here, the forward only reads constants.
        Called after every step-state update with every site of the UNet.
        """

    def edit_groups(self, call: AttentionCall, groups: list[AttentionGroup]) -> list[AttentionGroup]:
        """Rewrite keys/values/bias per group of query rows (K/V swap, concatenation, additive bias)."""
        return groups

    def edit_output(self, call: AttentionCall, output: Tensor) -> Tensor:
        """Rewrite the attention output [B, H, Lq, D] before the heads are merged and projected."""
        return output

    def observe_probs(self, call: AttentionCall, group: AttentionGroup, probs: Tensor) -> None:
        """Receive explicit probabilities [len(rows), H, Lq, Lk]; called only when `needs_probs` is True."""


def take_rows(groups: list[AttentionGroup], rows: list[int]) -> tuple[list[AttentionGroup], list[AttentionGroup]]:
    """Split groups into (groups without `rows`, the parts of groups that answered `rows`).

    Why: a control that re-answers some rows (a target taking a source's keys) must keep whatever earlier
    controls did to the other rows, and may build on what they did to its own rows.
    """
    chosen = set(rows)
    rest: list[AttentionGroup] = []
    taken: list[AttentionGroup] = []
    for group in groups:
        keep = [j for j, r in enumerate(group.rows) if r not in chosen]
        take = [j for j, r in enumerate(group.rows) if r in chosen]
        for positions, bucket in ((keep, rest), (take, taken)):
            if positions:
                bucket.append(_subset(group, positions))
    return rest, taken


def _subset(group: AttentionGroup, positions: list[int]) -> AttentionGroup:
    if len(positions) == len(group.rows):
        return group
    index = torch.as_tensor(positions, device=group.key.device)

    def pick(t: Tensor | None) -> Tensor | None:
        if t is None or t.ndim == 0 or t.shape[0] == 1:
            return t  # scalars and batch-broadcast tensors apply to every row
        return t.index_select(0, index)

    return AttentionGroup(
        [group.rows[j] for j in positions], pick(group.key), pick(group.value), pick(group.bias), pick(group.weight)
    )
