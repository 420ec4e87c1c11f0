"""Static identity of every attention module in a UNet, read from the module tree once at install time.

Why: methods select where they act ("decoder self-attention at the two highest resolutions"). The official
codes guess this by counting calls, which shifts as soon as a pipeline calls the UNet differently. A site
is known before the first forward and never changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from torch import nn

Place = Literal["down", "mid", "up", "other"]


@dataclass(frozen=True)
class Site:
    """One `Attention` module: where it sits in the UNet and what shape its tokens have."""

    name: str  # module path, e.g. "up_blocks.1.attentions.0.transformer_blocks.0.attn1"
    is_cross: bool  # attends to encoder states (text), from `Attention.is_cross_attention`
    place: Place
    block: int  # index of the down/up block (0 for mid)
    attention: int  # index of the Transformer2DModel within the block
    transformer: int  # index of the BasicTransformerBlock within the Transformer2DModel
    downsample: int  # spatial factor relative to the latent: 1, 2, 4, ...
    level: int  # rank of `downsample` among the UNet's attention resolutions; 0 = highest resolution
    heads: int
    head_dim: int
    order: int  # execution order among all sites (down -> mid -> up, attn1 before attn2)

    @property
    def kind(self) -> Literal["self", "cross"]:
        return "cross" if self.is_cross else "self"

    def spatial_size(self, latent_size: tuple[int, int]) -> tuple[int, int]:
        """Token grid (h, w) at this site for a latent of `latent_size`, following the UNet's stride-2 convs."""
        h, w = latent_size
        for _ in range(int(math.log2(self.downsample))):
            h, w = (h + 1) // 2, (w + 1) // 2
        return h, w


def _transformer_attentions(block: nn.Module) -> Iterator[tuple[int, int, str, nn.Module]]:
    """Yield (attention index, transformer index, attn name, module) in execution order."""
    for a, transformer2d in enumerate(getattr(block, "attentions", None) or []):
        for t, tblock in enumerate(getattr(transformer2d, "transformer_blocks", None) or []):
            for attr in ("attn1", "attn2"):
                module = getattr(tblock, attr, None)
                if module is not None and hasattr(module, "set_processor"):
                    yield a, t, f"attentions.{a}.transformer_blocks.{t}.{attr}", module


def discover_sites(unet: nn.Module) -> list[Site]:
    """All attention sites of a diffusers `UNet2DConditionModel`, in execution order.

    Modules outside the standard down/mid/up transformer layout still get a site (place "other") so that
    every processor is ours and nothing silently stays stock.
    """
    found: list[tuple[str, nn.Module, Place, int, int, int, int]] = []
    factor = 1
    for b, block in enumerate(unet.down_blocks):
        for a, t, suffix, module in _transformer_attentions(block):
            found.append((f"down_blocks.{b}.{suffix}", module, "down", b, a, t, factor))
        if getattr(block, "downsamplers", None) is not None:
            factor *= 2
    if getattr(unet, "mid_block", None) is not None:
        for a, t, suffix, module in _transformer_attentions(unet.mid_block):
            found.append((f"mid_block.{suffix}", module, "mid", 0, a, t, factor))
    for b, block in enumerate(unet.up_blocks):
        for a, t, suffix, module in _transformer_attentions(block):
            found.append((f"up_blocks.{b}.{suffix}", module, "up", b, a, t, factor))
        if getattr(block, "upsamplers", None) is not None:
            factor = max(1, factor // 2)

    known = {name for name, *_ in found}
    for name, module in unet.named_modules():
        if hasattr(module, "set_processor") and hasattr(module, "heads") and name not in known:
            found.append((name, module, "other", 0, 0, 0, 1))

    levels = {f: i for i, f in enumerate(sorted({entry[6] for entry in found}))}
    sites = []
    for order, (name, module, place, b, a, t, down) in enumerate(found):
        inner = getattr(module, "inner_dim", None) or module.to_q.out_features
        sites.append(
            Site(
                name=name,
                is_cross=bool(module.is_cross_attention),
                place=place,
                block=b,
                attention=a,
                transformer=t,
                downsample=down,
                level=levels[down],
                heads=module.heads,
                head_dim=inner // module.heads,
                order=order,
            )
        )
    return sites
