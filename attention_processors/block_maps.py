"""Per transformer block, where the concept's tokens attend: the binary masks of localized attention-guided (LAG)
sampling (Personalized Residuals, Ham et al., CVPR 2024).

Why an observer at the cross-attention sites only: LAG needs, at each block, the cross-attention map of the
identifier and class tokens, binarised, to decide where that block's residual applies. Cross-attention over the
text is cheap to materialise (Lq x 77), so only the blocks that carry residuals ask for explicit probabilities;
every other site stays fused. The map of a stream is read from its conditional row and serves all its rows
(the unconditional row's prompt does not contain the tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor

from attention_processors.control import AttentionCall, AttentionGroup, Control
from attention_processors.sites import Site
from attention_processors.state import StepState


def block_of(site_name: str) -> str:
    """The Transformer2DModel path of an attention site, e.g. "up_blocks.1.attentions.0"."""
    return site_name.split(".transformer_blocks.")[0]


@dataclass
class BlockTokenMaps(Control):
    """Binary masks [Lq] per (block, stream item): the normalised map of `token_indices[item]` > `threshold`.

    A block with several transformer layers (SDXL) sums their maps. `take(block)` hands a block's masks to the
    residual blend and clears them, so each UNet call starts afresh.
    """

    token_indices: dict[int, Sequence[int]]  # stream item -> text positions (identifier + class); -1: every item
    blocks: frozenset[str] | None  # Transformer2DModel paths whose residual the masks gate; None: every block
    threshold: float = 0.5
    needs_probs: bool = True
    layout: object = field(default=None, init=False, repr=False)
    _sums: dict[tuple[str, int], Tensor] = field(default_factory=dict, init=False, repr=False)

    def active(self, site: Site, state: StepState) -> bool:
        return site.is_cross and (self.blocks is None or block_of(site.name) in self.blocks)

    def observe_probs(self, call: AttentionCall, group: AttentionGroup, probs: Tensor) -> None:
        self.layout = call.layout
        block = block_of(call.site.name)
        for j, row in enumerate(group.rows):
            entry = call.layout.entries[row]
            tokens = self.token_indices.get(entry.item, self.token_indices.get(-1))
            if entry.half != "cond" or not tokens:
                continue
            grid = probs[j, :, :, list(tokens)].sum(-1).mean(0).float()  # [Lq]
            key = (block, entry.item)
            self._sums[key] = self._sums[key] + grid if key in self._sums else grid

    def take(self, block: str) -> dict[int, Tensor]:
        """Stream item -> bool mask [Lq] for `block`, and forget them."""
        masks = {}
        for key in [k for k in self._sums if k[0] == block]:
            total = self._sums.pop(key)
            low, high = total.min(), total.max()
            norm = (total - low) / (high - low) if high > low else total * 0
            masks[key[1]] = norm > self.threshold
        return masks

    def masks(self) -> dict[int, Tensor]:
        """Per stream item, the masks of the first recorded block (for inspection), without clearing them."""
        if not self._sums:
            return {}
        first = min(self._sums)[0]
        saved = dict(self._sums)
        found = self.take(first)
        self._sums = saved
        return {item: mask.float() for item, mask in found.items()}
