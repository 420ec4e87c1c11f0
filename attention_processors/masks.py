"""Binary masks resampled onto a site's token grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mask_to_tokens(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample a binary mask [..., H0, W0] to a token grid, flattened to [..., h*w] in {0., 1.}.

    A token is foreground when at least half its area is: area averaging keeps thin shapes stable
    across resolutions better than nearest sampling, and the result stays binary.
    """
    lead = mask.shape[:-2]
    grid = mask.reshape(-1, 1, *mask.shape[-2:]).float()  # [N, 1, H0, W0]
    if tuple(grid.shape[-2:]) != tuple(size):
        grid = (
            F.interpolate(grid, size=size, mode="area")
            if grid.shape[-1] >= size[1]
            else F.interpolate(grid, size=size, mode="nearest")
        )
    return (grid >= 0.5).float().reshape(*lead, size[0] * size[1])  # [..., h*w]


class TokenMaskCache:
    """Per-control memo of a mask at each grid size; masks are fixed for a run, grids repeat every step."""

    def __init__(self, mask: Tensor) -> None:
        self.mask = mask
        self._by_size: dict[tuple[int, int, str], Tensor] = {}
        self._indices: dict[tuple[int, int, str], Tensor] = {}

    def at(self, size: tuple[int, int], device: torch.device) -> Tensor:
        key = (size[0], size[1], str(device))
        if key not in self._by_size:
            self._by_size[key] = mask_to_tokens(self.mask, size).to(device)
        return self._by_size[key]

    def indices_at(self, size: tuple[int, int], device: torch.device) -> Tensor:
        """Flat indices [n] of the foreground tokens at this grid size."""
        key = (size[0], size[1], str(device))
        if key not in self._indices:
            self._indices[key] = self.at(size, device).nonzero().flatten()
        return self._indices[key]
