"""The attention-control framework: one site-aware processor, an explicit step state, a named batch
layout, and composable controls.

The package imports each name from its module on first use (PEP 562): the torch-free `settings`
module can then be read without loading torch, which keeps `studio --help` and the job schema fast.
"""

from __future__ import annotations

from attention_processors.lazy_exports import lazy_exports

_EXPORTS = {
    "AttentionCall": "attention_processors.control",
    "AttentionGroup": "attention_processors.control",
    "Control": "attention_processors.control",
    "attention_control": "attention_processors.install",
    "BatchLayout": "attention_processors.layout",
    "Row": "attention_processors.layout",
    "StudioAttnProcessor": "attention_processors.processor",
    "attention_probs": "attention_processors.processor",
    "run_groups": "attention_processors.processor",
    "SiteFilter": "attention_processors.selection",
    "StepWindow": "attention_processors.selection",
    "decoder_self_attention": "attention_processors.selection",
    "Site": "attention_processors.sites",
    "discover_sites": "attention_processors.sites",
    "StepState": "attention_processors.state",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
