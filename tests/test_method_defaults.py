"""Each method setting has one default: the CLI flag's, the pipeline function's and the control's agree.

Why a test: the defaults are stated once, in the settings dataclass beside each control or pipeline, and
everything else reads them; this fails the moment any layer states its own value again.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import typer

from attention_processors.multi_reference import MultiReferenceSelfAttention
from attention_processors.mutual_self_attention import MutualSelfAttention
from attention_processors.regional import RegionalCrossAttention
from attention_processors.selection import decoder_self_attention
from attention_processors.visctrl import FeatureGradualSampling, visctrl_control
from pipelines.customize import freecustom
from pipelines.mutual import mutual_edit
from pipelines.reconstruction import reconstruct
from pipelines.regional_prompting import regional
from pipelines.repainting import repaint
from pipelines.text_to_image import generate
from pipelines.uniform_edit import uniform_edit
from pipelines.uniform_mixing import UniformMapMixing
from pipelines.visctrl import FIRST_PASS, LATER_PASS, VISCTRL_RUN, visctrl
from studio.cli import app


def cli_default(command: str, param: str):
    click_app = typer.main.get_command(app)
    (found,) = [p for p in click_app.commands[command].params if p.name == param]
    return found.default


def pipeline_default(function, param: str):
    return inspect.signature(function).parameters[param].default


def field_default(cls, name: str):
    (found,) = [f for f in dataclasses.fields(cls) if f.name == name]
    return found.default if found.default is not dataclasses.MISSING else found.default_factory()


SETTINGS = {
    # setting: (CLI command, CLI param, pipeline default, control default or None where no control holds it)
    "MasaCtrl start": ("mutual", "start", pipeline_default(mutual_edit, "start"), MutualSelfAttention().steps.start),
    "MasaCtrl levels": ("mutual", "levels", pipeline_default(mutual_edit, "levels"), None),
    "mutual steps": ("mutual", "steps", pipeline_default(mutual_edit, "num_inference_steps"), None),
    "mutual guidance": ("mutual", "guidance", pipeline_default(mutual_edit, "guidance_scale"), None),
    "mutual inversion guidance": (
        "mutual",
        "inversion_guidance",
        pipeline_default(mutual_edit, "inversion_guidance_scale"),
        None,
    ),
    "VisCtrl start": ("visctrl", "start", FIRST_PASS.start, visctrl_control().steps.start),
    "VisCtrl alpha": (
        "visctrl",
        "alpha",
        pipeline_default(visctrl, "alpha"),
        field_default(FeatureGradualSampling, "alpha"),
    ),
    "VisCtrl sample fraction": (
        "visctrl",
        "sample_fraction",
        pipeline_default(visctrl, "sample_fraction"),
        field_default(FeatureGradualSampling, "sample_fraction"),
    ),
    "VisCtrl passes": ("visctrl", "passes", pipeline_default(visctrl, "passes"), None),
    "VisCtrl first-pass steps": ("visctrl", "steps", FIRST_PASS.num_inference_steps, None),
    "VisCtrl first-pass guidance": ("visctrl", "guidance", FIRST_PASS.guidance_scale, None),
    "VisCtrl later steps": ("visctrl", "later_steps", LATER_PASS.num_inference_steps, None),
    "VisCtrl later guidance": ("visctrl", "later_guidance", LATER_PASS.guidance_scale, None),
    "FreeCustom w": (
        "freecustom",
        "mask_weight",
        pipeline_default(freecustom, "mask_weights"),
        field_default(MultiReferenceSelfAttention, "weights"),
    ),
    "FreeCustom style fidelity": (
        "freecustom",
        "style_fidelity",
        pipeline_default(freecustom, "style_fidelity"),
        field_default(MultiReferenceSelfAttention, "style_fidelity"),
    ),
    "FreeCustom reference seed": (
        "freecustom",
        "reference_seed",
        pipeline_default(freecustom, "reference_seed"),
        None,
    ),
    "FreeCustom steps": ("freecustom", "steps", pipeline_default(freecustom, "num_inference_steps"), None),
    "FreeCustom guidance": ("freecustom", "guidance", pipeline_default(freecustom, "guidance_scale"), None),
    "generate steps": ("generate", "steps", pipeline_default(generate, "num_inference_steps"), None),
    "generate guidance": ("generate", "guidance", pipeline_default(generate, "guidance_scale"), None),
    "invert guidance": ("invert", "guidance", pipeline_default(reconstruct, "guidance_scale"), None),
    "RAG delta": ("regions", "delta", pipeline_default(regional, "delta"), field_default(RegionalCrossAttention, "delta")),
    "RAG binding": ("regions", "binding", pipeline_default(regional, "binding"), None),
    "RAG steps": ("regions", "steps", pipeline_default(regional, "num_inference_steps"), None),
    "RAG guidance": ("regions", "guidance", pipeline_default(regional, "guidance_scale"), None),
    "repaint delta": ("repaint", "delta", pipeline_default(repaint, "delta"), None),
    "repaint binding": ("repaint", "binding", pipeline_default(repaint, "binding"), None),
    "repaint steps": ("repaint", "steps", pipeline_default(repaint, "num_inference_steps"), None),
    "repaint guidance": ("repaint", "guidance", pipeline_default(repaint, "guidance_scale"), None),

    "invert uniform": ("invert", "uniform", pipeline_default(reconstruct, "uniform"), None),
    "mutual inversion": ("mutual", "inversion", pipeline_default(mutual_edit, "inversion"), None),
    "VisCtrl inversion": ("visctrl", "inversion", pipeline_default(visctrl, "inversion"), None),
    "UAM inversion": ("edit", "inversion", pipeline_default(uniform_edit, "inversion"), None),
    "UAM start": ("edit", "start", pipeline_default(uniform_edit, "start"), MutualSelfAttention().steps.start),
    "UAM levels": ("edit", "levels", pipeline_default(uniform_edit, "levels"), None),
    "UAM steps": ("edit", "steps", pipeline_default(uniform_edit, "num_inference_steps"), None),
    "UAM guidance": ("edit", "guidance", pipeline_default(uniform_edit, "guidance_scale"), None),
    "UAM quantile": (
        "edit",
        "quantile",
        pipeline_default(uniform_edit, "quantile"),
        field_default(UniformMapMixing, "quantile"),
    ),
    "UAM cutoff": (
        "edit",
        "cutoff",
        pipeline_default(uniform_edit, "cutoff"),
        field_default(UniformMapMixing, "cutoff"),
    ),
    "UAM dilate": (
        "edit",
        "dilate",
        pipeline_default(uniform_edit, "dilate"),
        field_default(UniformMapMixing, "dilate"),
    ),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_cli_pipeline_and_control_defaults_agree(name):
    command, param, pipeline, control = SETTINGS[name]
    assert cli_default(command, param) == pipeline
    if control is not None:
        assert control == pipeline


def test_the_masactrl_control_and_pipeline_control_the_same_levels():
    levels = pipeline_default(mutual_edit, "levels")
    assert MutualSelfAttention().sites == decoder_self_attention(levels)


def test_visctrl_crop_flag_is_the_pipeline_default_negated():
    """`--no-crop` is off by default: the crop (the official behaviour) is the pipeline's default."""
    assert cli_default("visctrl", "crop") is (not pipeline_default(visctrl, "crop")) is (not VISCTRL_RUN.crop)
