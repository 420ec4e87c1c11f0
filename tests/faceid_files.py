"""Random IP-Adapter-FaceID files in the official key layout (tencent-ailab/IP-Adapter's FaceID checkpoints,
flattened in `.safetensors`), for the FaceID tests.

- FaceID: `image_proj.proj.0 / proj.2 / norm` (an MLP from the 512-d ArcFace embedding to 4 tokens, then
  LayerNorm), `ip_adapter.{1,3,...}.to_k_ip / to_v_ip` at the cross-attentions, and LoRA weights
  `ip_adapter.{i}.to_{q,k,v,out}_lora.{down,up}.weight` at every attention processor i (0..N-1).
- FaceID-Plus / PlusV2: the same MLP (its width is the resampler's) and `image_proj.perceiver_resampler.*`,
  a 4-layer resampler whose queries are the ID tokens and whose keys are the aligned face's CLIP hidden
  states. Plus and PlusV2 files have the same keys (PlusV2 adds the ID tokens back at inference).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from tests.ip_adapter_files import ENCODER_HIDDEN, _cross_attention_shapes

ID_DIM = 512
RANK = 4


def _r(g: torch.Generator, *shape: int, s: float = 0.1) -> Tensor:
    return torch.randn(*shape, generator=g) * s


def _faceid_projection(g: torch.Generator, cross: int, tokens: int = 4) -> dict[str, Tensor]:
    return {
        "proj.0.weight": _r(g, 2 * ID_DIM, ID_DIM, s=0.05),
        "proj.0.bias": _r(g, 2 * ID_DIM),
        "proj.2.weight": _r(g, cross * tokens, 2 * ID_DIM, s=0.05),
        "proj.2.bias": _r(g, cross * tokens),
        "norm.weight": 1 + _r(g, cross),
        "norm.bias": _r(g, cross),
    }


def _faceid_plus_projection(g: torch.Generator, cross: int, tokens: int = 4) -> dict[str, Tensor]:
    """The resampler is as wide as the text (PlusV2 adds the ID tokens to its output), one 64-wide head."""
    width = cross
    state = {f"perceiver_resampler.{k}": v for k, v in _resampler(g, width, cross).items()}
    state |= {
        "proj.0.weight": _r(g, 2 * ID_DIM, ID_DIM, s=0.05),
        "proj.0.bias": _r(g, 2 * ID_DIM),
        "proj.2.weight": _r(g, width * tokens, 2 * ID_DIM, s=0.05),
        "proj.2.bias": _r(g, width * tokens),
        "norm.weight": 1 + _r(g, width),
        "norm.bias": _r(g, width),
    }
    return state


def _resampler(g: torch.Generator, width: int, cross: int) -> dict[str, Tensor]:
    state = {
        "proj_in.weight": _r(g, width, ENCODER_HIDDEN),
        "proj_in.bias": _r(g, width),
        "proj_out.weight": _r(g, cross, width),
        "proj_out.bias": _r(g, cross),
        "norm_out.weight": 1 + _r(g, cross),
        "norm_out.bias": _r(g, cross),
    }
    for i in range(4):
        state |= {
            f"layers.{i}.0.norm1.weight": 1 + _r(g, width),
            f"layers.{i}.0.norm1.bias": _r(g, width),
            f"layers.{i}.0.norm2.weight": 1 + _r(g, width),
            f"layers.{i}.0.norm2.bias": _r(g, width),
            f"layers.{i}.0.to_q.weight": _r(g, 64, width),
            f"layers.{i}.0.to_kv.weight": _r(g, 128, width),
            f"layers.{i}.0.to_out.weight": _r(g, width, 64),
            f"layers.{i}.1.0.weight": 1 + _r(g, width),
            f"layers.{i}.1.0.bias": _r(g, width),
            f"layers.{i}.1.1.weight": _r(g, 4 * width, width),
            f"layers.{i}.1.3.weight": _r(g, width, 4 * width),
        }
    return state


def _lora(g: torch.Generator, unet, state: dict[str, Tensor]) -> None:
    """LoRA weights at every attention processor, numbered 0..N-1 in `unet.attn_processors` order."""
    modules = dict(unet.named_modules())
    for key_id, name in enumerate(unet.attn_processors):
        attn = modules[name.removesuffix(".processor")]
        for part, layer in (("to_q", attn.to_q), ("to_k", attn.to_k), ("to_v", attn.to_v), ("to_out", attn.to_out[0])):
            state[f"ip_adapter.{key_id}.{part}_lora.down.weight"] = _r(g, RANK, layer.in_features, s=0.3)
            state[f"ip_adapter.{key_id}.{part}_lora.up.weight"] = _r(g, layer.out_features, RANK, s=0.3)


def faceid_state(unet, kind: str = "faceid", seed: int = 0, lora: bool = True) -> dict[str, Tensor]:
    """A random FaceID ("faceid") or FaceID-Plus ("faceid_plus") adapter for `unet`, official layout."""
    g = torch.Generator().manual_seed(seed)
    cross = int(unet.config.cross_attention_dim)
    projection = {"faceid": _faceid_projection, "faceid_plus": _faceid_plus_projection}[kind](g, cross)
    state = {f"image_proj.{k}": v for k, v in projection.items()}
    for k, width in enumerate(_cross_attention_shapes(unet)):
        state[f"ip_adapter.{2 * k + 1}.to_k_ip.weight"] = _r(g, width, cross, s=0.3)
        state[f"ip_adapter.{2 * k + 1}.to_v_ip.weight"] = _r(g, width, cross, s=0.3)
    if lora:
        _lora(g, unet, state)
    return state


def write_faceid(
    folder: Path, unet, kind: str = "faceid", seed: int = 0, lora: bool = True, name: str | None = None
) -> Path:
    path = Path(folder) / (name or f"ip-adapter-{kind.replace('_', '-')}-{seed}.safetensors")
    save_file({k: v.contiguous() for k, v in faceid_state(unet, kind, seed, lora).items()}, str(path))
    return path
