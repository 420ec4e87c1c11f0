"""An image prompt's strength: one scale everywhere, or per block as diffusers' `set_ip_adapter_scale` takes it.

Its own module because image prompts (`pipelines.ip_adapter`) and face prompts (`pipelines.ip_adapter_faceid`)
both read it, and the first dispatches to the second.
"""

from __future__ import annotations

from collections.abc import Mapping

from diffusers.loaders.unet_loader_utils import _maybe_expand_lora_scales
from torch import nn

BlockScales = Mapping[str, object]  # diffusers' per-block form: {"down": {"block_2": [0.0, 1.0]}, "up": ...}


def site_scales(unet: nn.Module, scale: float | BlockScales) -> float | dict[str, float]:
    """A float as is; a per-block dict expanded to {module-name prefix: scale} with diffusers' own expander."""
    if not isinstance(scale, Mapping):
        return float(scale)
    (expanded,) = _maybe_expand_lora_scales(unet, [dict(scale)], default_scale=0.0)
    return {prefix: float(value) for prefix, value in expanded.items()}
