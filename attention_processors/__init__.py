"""The attention-control framework: one site-aware processor, an explicit step state, a named batch
layout, and composable controls. See DESIGN.md, "The attention-control framework"."""

from attention_processors.control import AttentionCall, AttentionGroup, Control
from attention_processors.install import attention_control
from attention_processors.layout import BatchLayout, Row
from attention_processors.processor import StudioAttnProcessor, attention_probs, run_groups
from attention_processors.selection import SiteFilter, StepWindow, decoder_self_attention
from attention_processors.sites import Site, discover_sites
from attention_processors.state import StepState

__all__ = [
    "AttentionCall",
    "AttentionGroup",
    "BatchLayout",
    "Control",
    "Row",
    "Site",
    "SiteFilter",
    "StepState",
    "StepWindow",
    "StudioAttnProcessor",
    "attention_control",
    "attention_probs",
    "decoder_self_attention",
    "discover_sites",
    "run_groups",
]
