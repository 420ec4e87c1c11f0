"""A region's box checked, and the most regions a job may have, free of torch.

Why a module of their own: the studio's region tasks check a job's boxes when the job is read, before any
model (or torch) loads, with the very rule the pipeline applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_REGIONS = 16  # each region adds a cross-attention branch at every site and a UNet pass per binding step
EDGE_TOLERANCE = 1e-6  # a box may touch the image's edge up to float rounding (0.1 + 0.9 = 1.0000000000000002)


def check_box(box: Sequence[float], where: str) -> tuple[float, float, float, float]:
    """(x, y, w, h) inside the unit square with positive area, or a ValueError saying what is wrong."""
    if len(box) != 4:
        raise ValueError(f"{where}: a box is x,y,w,h (four numbers), got {len(box)}")
    x, y, w, h = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"{where}: box {x},{y},{w},{h} has a value that is not a finite number")
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: box {x:g},{y:g},{w:g},{h:g} has zero area; width and height must be > 0")
    if x < 0 or y < 0 or x + w > 1 + EDGE_TOLERANCE or y + h > 1 + EDGE_TOLERANCE:
        raise ValueError(
            f"{where}: box {x:g},{y:g},{w:g},{h:g} lies outside the image; x,y,w,h are fractions with "
            "x >= 0, y >= 0, x + w <= 1, y + h <= 1"
        )
    return x, y, w, h


def binding_steps(fraction: float, total: int) -> int:
    """How many of `total` steps are bound: `fraction` of the schedule, rounded (0.1 of 25 is 2)."""
    return max(0, min(total, round(fraction * total)))
