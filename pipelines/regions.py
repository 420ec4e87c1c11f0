"""Regions of an image for regional prompting (RAG): a box or a mask, each with its own prompt, placed on the
latent grid.

Why one place: hard binding crops and pastes latents by a region's cells, soft refinement resamples its mask
to each attention site, and repainting pastes pixels back outside it; all three must agree on which latent
cells a region owns. A box (x, y, w, h as fractions of the image) owns the cells between its rounded edges;
a mask owns the cells at least half inside it (the rule `attention_processors.masks` uses at every site).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attention_processors.masks import mask_to_tokens
from pipelines.region_boxes import MAX_REGIONS, check_box


@dataclass(frozen=True)
class Region:
    """One region and its prompt: `box` = (x, y, w, h) as fractions of the image, or `mask` [H, W] in {0, 1}.

    `binding_prompt` is what the region's own small image shows during hard binding; None means `prompt`. The
    official code takes the two apart (`HB_prompt_list` names the object alone, "Dog"; the `SR_prompt` cell may
    say more, "On the left, Einstein ..."), because the small image has no place in the whole one: a position
    said there is a position inside the box.
    """

    prompt: str
    box: tuple[float, float, float, float] | None = None
    mask: Tensor | None = None  # any size; resampled to the latent grid (the image's own size for repainting)
    binding_prompt: str | None = None

    def __post_init__(self) -> None:
        if (self.box is None) == (self.mask is None):
            raise ValueError("a region is a box or a mask, exactly one of them")


@dataclass(frozen=True)
class PlacedRegion:
    """A region on a latent grid: the rectangle of cells it spans and which of them it owns."""

    prompt: str
    top: int
    left: int
    bottom: int  # exclusive
    right: int  # exclusive
    cells: Tensor  # (h, w) in {0., 1.} on the whole latent grid
    binding_prompt: str  # the prompt of the region's own run during hard binding (`prompt` unless one was given)

    @property
    def owned(self) -> Tensor:
        """The owned cells inside the rectangle, (bottom - top, right - left)."""
        return self.cells[self.top : self.bottom, self.left : self.right]


def check_regions(regions: Sequence[Region]) -> None:
    """Refuse what no size can fix: no regions, too many, an empty prompt, a bad box."""
    if not regions:
        raise ValueError("give at least one region")
    if len(regions) > MAX_REGIONS:
        raise ValueError(
            f"{len(regions)} regions; at most {MAX_REGIONS} (each adds a cross-attention branch at every site "
            "and a UNet pass at every binding step)"
        )
    for i, region in enumerate(regions):
        if not region.prompt.strip():
            raise ValueError(f"region {i}: the region prompt is empty; say what the region shows")
        if region.binding_prompt is not None and not region.binding_prompt.strip():
            raise ValueError(f"region {i}: the binding prompt is empty; say what the region shows, or leave it out")
        if region.box is not None:
            check_box(region.box, f"region {i}")
        elif region.mask is None or region.mask.ndim != 2:
            raise ValueError(f"region {i}: a region mask must be 2-D [H, W]")


def place(regions: Sequence[Region], latent_size: tuple[int, int]) -> list[PlacedRegion]:
    """Each region on the latent grid (h, w); a region that owns no cell there is refused."""
    check_regions(regions)
    h, w = latent_size
    placed = []
    for i, region in enumerate(regions):
        cells = torch.zeros(h, w)
        if region.box is not None:
            x, y, bw, bh = check_box(region.box, f"region {i}")
            left, right = round(x * w), min(w, round((x + bw) * w))
            top, bottom = round(y * h), min(h, round((y + bh) * h))
            cells[top:bottom, left:right] = 1
        else:
            cells = mask_to_tokens(region.mask, (h, w)).view(h, w)  # (h, w)
        rows, cols = cells.sum(dim=1).nonzero().flatten(), cells.sum(dim=0).nonzero().flatten()
        if rows.numel() == 0:
            raise ValueError(
                f"region {i} covers no latent cell of the {w}x{h} latent grid (each cell is 1/{w} of the width, "
                f"1/{h} of the height); make it larger"
            )
        top, bottom = int(rows[0]), int(rows[-1]) + 1
        left, right = int(cols[0]), int(cols[-1]) + 1
        binding = region.binding_prompt or region.prompt
        placed.append(PlacedRegion(region.prompt, top, left, bottom, right, cells, binding))
    return placed
