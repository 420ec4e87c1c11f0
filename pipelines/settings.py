"""Each pipeline's schedule defaults, stated once, free of torch (see attention_processors/settings.py for why)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval, doc

from attention_processors.settings import VISCTRL


@dataclass(frozen=True)
class GenerateSettings:
    """Plain generation's schedule defaults, stated once (the pipeline and the studio's task read them)."""

    # DDIM reaches most of its quality by 25 steps on SD-class models; more mostly costs time.
    steps: Annotated[int, Interval(ge=1, le=1000), doc("DDIM steps.")] = 25
    # A moderate CFG: prompt-faithful without the saturation of the older 7.5 default.
    guidance: Annotated[float, Interval(ge=0.0, le=100.0), doc("CFG scale.")] = 5.0


GENERATE = GenerateSettings()


@dataclass(frozen=True)
class ReconstructSettings:
    """Invert-then-reconstruct defaults, stated once (this pipeline and the studio's invert task read them)."""

    steps: Annotated[int, Interval(ge=1, le=1000), doc("DDIM steps.")] = 25  # as plain generation
    # No CFG: DDIM inversion is closest to exact without it, so the round trip measures the model itself.
    guidance: Annotated[float, Interval(ge=0.0, le=100.0), doc("CFG scale for inversion.")] = 1.0


RECONSTRUCT = ReconstructSettings()


@dataclass(frozen=True)
class MutualSettings:
    """The mutual-edit schedule's defaults (MasaCtrl's), stated once; the control's own are `MASACTRL`."""

    steps: Annotated[int, Interval(ge=1, le=1000), doc("DDIM steps.")] = 50  # the paper's 50 DDIM steps
    guidance: Annotated[float, Interval(ge=0.0, le=100.0), doc("CFG scale.")] = 7.5  # the paper's CFG 7.5
    # Real sources are inverted without CFG, the usual choice: DDIM inversion drifts more under guidance.
    inversion_guidance: Annotated[
        float, Interval(ge=0.0, le=100.0), doc("CFG scale while inverting a real source (1: none).")
    ] = 1.0


MUTUAL = MutualSettings()


@dataclass(frozen=True)
class FreeCustomRunSettings:
    """FreeCustom's schedule defaults, stated once; the attention's own are `FREECUSTOM`."""

    steps: Annotated[int, Interval(ge=1, le=1000), doc("DDIM steps.")] = 50  # the official 50 DDIM steps
    guidance: Annotated[float, Interval(ge=0.0, le=100.0), doc("CFG scale.")] = 7.5  # the official CFG 7.5
    # Any fixed seed works; 0 makes the references' re-noising reproducible by default.
    reference_seed: Annotated[
        int, Interval(ge=0, le=2**63 - 1), doc("Seed of the fresh noise that re-noises the references each step.")
    ] = 0


FREECUSTOM_RUN = FreeCustomRunSettings()


@dataclass(frozen=True)
class VisCtrlRunSettings:
    """VisCtrl's pipeline defaults besides the passes' schedules, stated once (the studio's task reads them)."""

    # The official script takes the iteration count from its user (`--iteration_num`, no default); the paper
    # shows 1-5. On toyworld's generated cases colour and pattern moved in 0/16 cases with one pass, 2/16 with
    # three, 4/16 with five, 15/24 with eight (9 of the first 16) and 9/16 with twelve (README, "Appearance
    # methods on toyworld"); each later pass costs one 5-step inversion and one 5-step edit.
    passes: Annotated[int, Interval(ge=1, le=20), doc("View iterations (each edits the last).")] = 8
    # The official script always edits a crop of the object, resized to the model's size, and so does the studio
    # by default: a photo's object is often small, and a crop takes any aspect ratio (the whole-image mode needs a
    # square image). On toyworld's 64-px renders the crop magnifies a 13-31 px object and its pattern 2-4x, a
    # scale the toy model never drew (eight passes: colour and pattern moved in 5/24 cases with the crop, 15/24
    # on the whole image; README), so the toyworld measurements edit the whole image (`--no-crop`).
    crop: Annotated[bool, doc("Edit a square crop around the mask (official); off: the whole square image.")] = True
    # Context around the object in the crop, as a share of its size (the official crop keeps some margin).
    margin: Annotated[float, Interval(ge=0.0, le=4.0), doc("Crop margin around the object.")] = 0.15


VISCTRL_RUN = VisCtrlRunSettings()


@dataclass(frozen=True)
class VisCtrlPass:
    num_inference_steps: int
    guidance_scale: float
    start: float  # first controlled step as a fraction of the schedule


FIRST_PASS = VisCtrlPass(10, 6.0, VISCTRL.start)  # official: 10 DDIM steps, CFG 6, control from step 2
LATER_PASS = VisCtrlPass(5, 4.0, VISCTRL.start)  # official: 5 DDIM steps, CFG 4, control from step 1


@dataclass(frozen=True)
class RegionalRunSettings:
    """RAG hard binding's default, stated once (the regional and repaint pipelines and their tasks read it)."""

    # The official code binds for HB_replace = 2 of FLUX's 20 steps: the layout forms in the first tenth of the
    # schedule, and longer binding shows seams (its README); the same share of a UNet schedule.
    binding: Annotated[
        float, Interval(ge=0.0, le=1.0), doc("Hard binding: share of the first steps each region runs alone.")
    ] = 2 / 20


REGIONAL_RUN = RegionalRunSettings()

INVERSIONS = ("ddim", "uniform")  # how a real image is inverted: plain DDIM, or with uniform cross-attention maps


def check_inversion(mode: str) -> str:
    """`mode` if it names an inversion, else a one-line ValueError that lists them."""
    if mode not in INVERSIONS:
        raise ValueError(f"unknown inversion mode {mode!r}; expected one of {', '.join(INVERSIONS)}")
    return mode


@dataclass(frozen=True)
class UniformEditSettings:
    """Uniform Attention Maps editing's defaults (official README run of arXiv 2411.19652), stated once.

    The MasaCtrl control's own (step 4 of 50, decoder blocks 10-15) are `MASACTRL`.
    """

    steps: Annotated[int, Interval(ge=1, le=1000), doc("DDIM steps.")] = 50  # the paper's 50 DDIM steps
    guidance: Annotated[float, Interval(ge=0.0, le=100.0), doc("CFG scale.")] = 7.5  # the paper's CFG 7.5
    # The official run (README: --quantile_list 0.5): the threshold's quantile rises linearly from 0 to this.
    quantile: Annotated[
        float, Interval(ge=0.0, le=1.0), doc("Final quantile of |x0_src - x0_tgt| that marks the edit.")
    ] = 0.5
    # The official run (README: --recon_t_list 200): the mask mixes x0 only at timesteps below this (of 1000).
    cutoff: Annotated[
        int, Interval(ge=0, le=1000), doc("Mix x0 with the uniform branch at timesteps below this.")
    ] = 200
    # The official dilate_mask=1: a 3x3 max-pool grows the edited area by one latent pixel.
    dilate: Annotated[int, Interval(ge=0, le=8), doc("Dilation radius of the edit mask, latent pixels.")] = 1


UNIFORM_EDIT = UniformEditSettings()
