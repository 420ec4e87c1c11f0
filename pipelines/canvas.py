"""Cut an object out onto a square working canvas and paste an edited canvas back through its mask.

Why: VisCtrl edits objects, not whole photos. The official code crops each object to its mask's bounding
box on a white square canvas, edits at the model's resolution, and pastes the result back through the
mask. Here the crop keeps a margin of context, and the paste-back is exact: pixels outside the target mask
are the input's own bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from torch import Tensor


@dataclass(frozen=True)
class Canvas:
    """Where a square working canvas sits in its source image."""

    left: int  # canvas box in source-image pixels (may extend past the image edges)
    top: int
    side: int
    size: int  # working resolution of the canvas (square, pixels)

    def cut(self, image: PIL.Image.Image, fill: int = 255) -> PIL.Image.Image:
        """The canvas box of `image` on a `fill` background, resized to the working size."""
        canvas = PIL.Image.new("RGB", (self.side, self.side), (fill, fill, fill))
        canvas.paste(image.convert("RGB"), (-self.left, -self.top))
        return canvas.resize((self.size, self.size), PIL.Image.Resampling.LANCZOS)

    def cut_mask(self, mask: Tensor) -> Tensor:
        """The canvas box of a mask [H, W] (zeros outside the image), at the working size."""
        image = PIL.Image.fromarray((mask.numpy() > 0.5).astype(np.uint8) * 255, "L")
        canvas = PIL.Image.new("L", (self.side, self.side), 0)
        canvas.paste(image, (-self.left, -self.top))
        resized = canvas.resize((self.size, self.size), PIL.Image.Resampling.BILINEAR)
        return torch.from_numpy((np.asarray(resized) >= 128).astype(np.float32))  # [size, size]

    def paste(self, edited: PIL.Image.Image, onto: PIL.Image.Image, mask: Tensor) -> PIL.Image.Image:
        """`onto` with the edited canvas pasted back inside `mask` [H, W]; pixels outside are untouched."""
        back = edited.convert("RGB").resize((self.side, self.side), PIL.Image.Resampling.LANCZOS)
        layer = PIL.Image.new("RGB", onto.size)
        layer.paste(back, (self.left, self.top))
        keep = PIL.Image.fromarray((mask.numpy() > 0.5).astype(np.uint8) * 255, "L")
        return PIL.Image.composite(layer, onto.convert("RGB"), keep)


def object_canvas(mask: Tensor, size: int, margin: float = 0.15) -> Canvas:
    """A square canvas around the mask's bounding box with `margin` of its side on each edge."""
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    if ys.numel() == 0:
        raise ValueError("the mask is empty: mark the object to edit")
    top, bottom, left, right = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    side = int(round(max(bottom - top, right - left) * (1 + 2 * margin)))
    cy, cx = (top + bottom) / 2, (left + right) / 2
    return Canvas(left=int(round(cx - side / 2)), top=int(round(cy - side / 2)), side=max(side, 1), size=size)


def whole_image_canvas(image: PIL.Image.Image, size: int) -> Canvas:
    """The whole (square) image as the canvas: for images already framed around their object."""
    if image.width != image.height:
        raise ValueError(
            f"editing without a crop needs a square image, got {image.width}x{image.height}: "
            "edit a square crop around the mask instead (crop=True, --crop)"
        )
    return Canvas(left=0, top=0, side=image.width, size=size)
