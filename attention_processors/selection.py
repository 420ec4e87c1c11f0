"""Reusable answers to "where and when does a method act", as fractions so they hold for any step count."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from attention_processors.sites import Place, Site
from attention_processors.state import StepState


@dataclass(frozen=True)
class StepWindow:
    """Steps [start, end) as fractions of the schedule: MasaCtrl's "from step 4 of 50" is start=0.08."""

    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(f"step window must satisfy 0 <= start <= end <= 1, got [{self.start}, {self.end})")

    def contains(self, state: StepState) -> bool:
        first = round(self.start * state.total)
        last = round(self.end * state.total)
        return first <= state.index < last


@dataclass(frozen=True)
class SiteFilter:
    """Select sites by kind, UNet part and resolution level (0 = highest resolution with attention)."""

    kind: str | None = "self"  # "self", "cross" or None for both
    places: Collection[Place] | None = None
    levels: Collection[int] | None = None
    names: Collection[str] | None = None  # explicit module names, for power users
    min_order: int = 0  # skip sites that run before this execution index (VisCtrl skips the first block)

    def matches(self, site: Site) -> bool:
        return (
            (self.kind is None or site.kind == self.kind)
            and (self.places is None or site.place in self.places)
            and (self.levels is None or site.level in self.levels)
            and (self.names is None or site.name in self.names)
            and site.order >= self.min_order
        )


def decoder_self_attention(highest_levels: int = 2) -> SiteFilter:
    """MasaCtrl/FreeCustom default: decoder self-attention at the two highest resolutions."""
    return SiteFilter(kind="self", places=("up",), levels=tuple(range(highest_levels)))
