"""Random IP-Adapter files in the official layout (tencent-ailab/IP-Adapter's key names), and a tiny CLIP
vision tower, for the IP-Adapter tests.

The files are written from the official key names, not from diffusers' module names, so that loading
them through diffusers' converter (ours and `pipe.load_ip_adapter` alike) is part of what the tests check.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

ENCODER_HIDDEN = 32  # the tiny vision tower's width (Plus reads its hidden states)
ENCODER_EMBEDS = 24  # its projection width (base reads its image_embeds)
IMAGE_SIZE = 32


def tiny_image_encoder(seed: int = 0) -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessorPil]:
    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=ENCODER_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=8,
        projection_dim=ENCODER_EMBEDS,
    )
    extractor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    return CLIPVisionModelWithProjection(config).eval(), extractor


def _cross_attention_shapes(unet) -> list[int]:
    """Output width of every cross-attention, in `unet.attn_processors` order (the file's id order)."""
    modules = dict(unet.named_modules())
    widths = []
    for name in unet.attn_processors:
        if not name.endswith("attn1.processor"):
            widths.append(modules[name.removesuffix(".processor")].to_k.out_features)
    return widths


def _base_projection(g: torch.Generator, cross: int) -> dict[str, Tensor]:
    return {
        "proj.weight": torch.randn(4 * cross, ENCODER_EMBEDS, generator=g) * 0.2,
        "proj.bias": torch.randn(4 * cross, generator=g) * 0.1,
        "norm.weight": 1 + torch.randn(cross, generator=g) * 0.1,
        "norm.bias": torch.randn(cross, generator=g) * 0.1,
    }


def _plus_projection(g: torch.Generator, cross: int, queries: int = 16, width: int = 64) -> dict[str, Tensor]:
    """The official Resampler (depth 4, 64-wide heads) with one head of 64."""

    def r(*shape: int, s: float = 0.1) -> Tensor:
        return torch.randn(*shape, generator=g) * s

    state = {
        "latents": r(1, queries, width, s=0.5),
        "proj_in.weight": r(width, ENCODER_HIDDEN),
        "proj_in.bias": r(width),
        "proj_out.weight": r(cross, width),
        "proj_out.bias": r(cross),
        "norm_out.weight": 1 + r(cross),
        "norm_out.bias": r(cross),
    }
    for i in range(4):
        state |= {
            f"layers.{i}.0.norm1.weight": 1 + r(width),
            f"layers.{i}.0.norm1.bias": r(width),
            f"layers.{i}.0.norm2.weight": 1 + r(width),
            f"layers.{i}.0.norm2.bias": r(width),
            f"layers.{i}.0.to_q.weight": r(64, width),
            f"layers.{i}.0.to_kv.weight": r(128, width),
            f"layers.{i}.0.to_out.weight": r(width, 64),
            f"layers.{i}.1.0.weight": 1 + r(width),
            f"layers.{i}.1.0.bias": r(width),
            f"layers.{i}.1.1.weight": r(4 * width, width),
            f"layers.{i}.1.3.weight": r(width, 4 * width),
        }
    return state


def _full_projection(g: torch.Generator, cross: int) -> dict[str, Tensor]:
    """Full-face: MLP(hidden -> hidden -> C) on every hidden state, then LayerNorm."""
    return {
        "proj.0.weight": torch.randn(ENCODER_HIDDEN, ENCODER_HIDDEN, generator=g) * 0.2,
        "proj.0.bias": torch.randn(ENCODER_HIDDEN, generator=g) * 0.1,
        "proj.2.weight": torch.randn(cross, ENCODER_HIDDEN, generator=g) * 0.2,
        "proj.2.bias": torch.randn(cross, generator=g) * 0.1,
        "proj.3.weight": 1 + torch.randn(cross, generator=g) * 0.1,
        "proj.3.bias": torch.randn(cross, generator=g) * 0.1,
    }


PROJECTIONS = {"base": _base_projection, "plus": _plus_projection, "full": _full_projection}


def adapter_state(unet, kind: str = "base", seed: int = 0) -> dict[str, Tensor]:
    """A random adapter for `unet` in the official flattened layout."""
    g = torch.Generator().manual_seed(seed)
    cross = int(unet.config.cross_attention_dim)
    projection = PROJECTIONS[kind](g, cross)
    state = {f"image_proj.{k}": v for k, v in projection.items()}
    for k, width in enumerate(_cross_attention_shapes(unet)):
        key_id = 2 * k + 1
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(width, cross, generator=g) * 0.3
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(width, cross, generator=g) * 0.3
    return state


def write_adapter(folder: Path, unet, kind: str = "base", seed: int = 0, name: str | None = None) -> Path:
    path = Path(folder) / (name or f"ip-adapter-{kind}-{seed}.safetensors")
    save_file({k: v.contiguous() for k, v in adapter_state(unet, kind, seed).items()}, str(path))
    return path


@functools.cache
def family_unet(family: str):
    """The tiny model's UNet of a family, built once (read-only for the callers)."""
    from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline

    return {"sd15": tiny_sd15_pipeline, "sdxl": tiny_sdxl_pipeline}[family]().unet


def random_image_branches(family: str, scale: float = 0.8, mask: Tensor | None = None) -> list:
    """Two image branches (base and Plus-sized token counts) with random tokens, for the control contract."""
    from attention_processors.ip_adapter import ImageBranch
    from pipelines.ip_adapter_weights import adapter_from_state, site_weights

    unet = family_unet(family)
    cross = int(unet.config.cross_attention_dim)
    g = torch.Generator().manual_seed(7)
    branches = []
    for seed, tokens in ((1, 4), (2, 16)):
        weights = site_weights(adapter_from_state(f"random-{seed}", adapter_state(unet, "base", seed)), unet)
        branches.append(
            ImageBranch(
                weights=weights,
                tokens=torch.randn(tokens, cross, generator=g),
                negative_tokens=torch.randn(tokens, cross, generator=g),
                scale=scale,
                mask=mask if seed == 1 else None,
            )
        )
    return branches
