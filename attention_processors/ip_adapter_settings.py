"""IP-Adapter's settings with their defaults, stated once and free of torch (the studio's CLI reads them at
start-up; see `attention_processors/settings.py` for why settings live apart from the controls)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval, doc


@dataclass(frozen=True)
class IPAdapterSettings:
    """The image prompt's strength and step range."""

    # The official README uses 1.0 for an image prompt alone and about 0.5 with a text prompt. Every studio
    # command that takes an image prompt also has a text prompt, so the text-and-image value is the default.
    scale: Annotated[float, Interval(ge=0.0, le=5.0), doc("Strength of the image prompt (0: none).")] = 0.5
    start: Annotated[float, Interval(ge=0.0, le=1.0), doc("First step with the image prompt (fraction).")] = 0.0
    end: Annotated[float, Interval(ge=0.0, le=1.0), doc("Step where the image prompt stops (fraction).")] = 1.0


IP_ADAPTER = IPAdapterSettings()
