"""Each attention method's settings with their defaults, stated once, free of torch.

Why a module of their own: the control, its pipeline and the studio's task all read these defaults, and
the studio's CLI and job schema are built from them at start-up. Kept apart from the controls (which need
torch), they let `studio --help` and the schema load without importing torch. Each field's `Interval` is
its valid range and its `doc` the help a user sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval, doc


@dataclass(frozen=True)
class MasaCtrlSettings:
    """MasaCtrl's settings with their defaults, stated once: the control, the pipeline and the studio read them.

    Each field's `Interval` is its valid range and its `doc` the help a user sees.
    """

    # The paper starts mutual self-attention at step 4 of 50 (its S = 4): the target's layout forms from its
    # own prompt first, then it takes the source's appearance.
    start: Annotated[float, Interval(ge=0.0, le=1.0), doc("First controlled step, as a fraction of the schedule.")] = (
        4 / 50
    )
    # The paper controls decoder blocks 10-15 of SD1.5: the two highest of its three attention resolutions
    # (SDXL's decoder has two, so 3 is the most any backbone supports).
    levels: Annotated[int, Interval(ge=1, le=3), doc("Decoder resolutions controlled, highest first.")] = 2


MASACTRL = MasaCtrlSettings()


@dataclass(frozen=True)
class VisCtrlSettings:
    """VisCtrl's attention settings with their defaults, stated once (control, pipeline and studio read them)."""

    # The official code controls from step 2 of 10 on the first pass and step 1 of 5 on later ones: 20%.
    start: Annotated[float, Interval(ge=0.0, le=1.0), doc("First controlled step, fraction of the schedule.")] = 0.2
    # Our Feature Gradual Sampling design (the paper gives no value): earlier views and the reference weigh alike.
    alpha: Annotated[float, Interval(ge=0.0, le=1.0), doc("Feature Gradual Sampling weight of earlier views.")] = 0.5
    # Half of each earlier view's tokens per site and step: enough to pull views together, half the cost.
    sample_fraction: Annotated[
        float, Interval(gt=0.0, le=1.0), doc("Share of each earlier view's tokens sampled per site and step.")
    ] = 0.5


VISCTRL = VisCtrlSettings()


@dataclass(frozen=True)
class FreeCustomSettings:
    """FreeCustom's MRSA settings with their defaults, stated once (control, pipeline and studio read them)."""

    # The official code adds w = 3 to the logits of each reference's foreground keys.
    mask_weight: Annotated[
        float, Interval(ge=0.0, le=100.0), doc("Mask weight w added to the concept's logits.")
    ] = 3.0
    # ControlNet reference-only's default, which FreeCustom keeps: the unconditional half stays plain.
    style_fidelity: Annotated[
        float, Interval(ge=0.0, le=1.0), doc("1: the unconditional half stays plain (official); lower mixes MRSA in.")
    ] = 1.0


FREECUSTOM = FreeCustomSettings()


@dataclass(frozen=True)
class RegionalSettings:
    """RAG's soft refinement (regional cross-attention) with its default, stated once (control, pipeline, studio)."""

    # The official code's SR_delta = 1.0: inside a region its own prompt answers the queries alone; the README
    # suggests 0.25-1.0 when regions should blend more with the global prompt.
    delta: Annotated[
        float, Interval(ge=0.0, le=1.0), doc("Soft refinement: weight of each region's own prompt inside it.")
    ] = 1.0


REGIONAL = RegionalSettings()
