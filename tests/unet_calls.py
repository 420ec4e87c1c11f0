"""One tiny-UNet forward under diffusers' stock processor or under the studio's, for the framework tests.

Why a helper module: the stock `AttnProcessor2_0` output is the oracle of the framework tests and of the
control contract, so both must build inputs and call the UNet the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from torch import nn

from attention_processors import BatchLayout, Control, attention_control


def unet_inputs(unet: nn.Module, batch: int, latent_size: tuple[int, int], seed: int = 1) -> dict:
    """Random latents and text states for `batch` rows (plus SDXL's pooled text and time ids), timestep 500."""
    g = torch.Generator().manual_seed(seed)
    h, w = latent_size
    sample = torch.randn(batch, 4, h, w, generator=g)  # [B, 4, h, w]
    text = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)  # [B, 77, C]
    kwargs = {"sample": sample, "timestep": torch.tensor(500), "encoder_hidden_states": text}
    if unet.config.addition_embed_type == "text_time":
        pooled = torch.randn(batch, unet.config.projection_class_embeddings_input_dim - 6 * 8, generator=g)
        time_ids = torch.tensor([[h * 8, w * 8, 0, 0, h * 8, w * 8]] * batch, dtype=torch.float32)  # [B, 6]
        kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
    return kwargs


def select_rows(inputs: dict, rows: Sequence[int]) -> dict:
    """The same inputs for a sub-batch: every per-row tensor indexed by `rows`, in that order."""
    index = torch.as_tensor(list(rows), dtype=torch.long)
    out = {"sample": inputs["sample"][index], "timestep": inputs["timestep"]}
    out["encoder_hidden_states"] = inputs["encoder_hidden_states"][index]
    if "added_cond_kwargs" in inputs:
        out["added_cond_kwargs"] = {k: v[index] for k, v in inputs["added_cond_kwargs"].items()}
    return out


@torch.no_grad()
def stock_output(unet: nn.Module, inputs: dict) -> torch.Tensor:
    """The UNet's prediction with diffusers' stock `AttnProcessor2_0` everywhere (the oracle)."""
    saved = unet.attn_processors
    unet.set_attn_processor(AttnProcessor2_0())
    try:
        return unet(**inputs).sample
    finally:
        unet.set_attn_processor(saved)


@torch.no_grad()
def studio_output(
    unet: nn.Module,
    inputs: dict,
    controls: Sequence[Control] = (),
    layout: BatchLayout | None = None,
    *,
    step: int = 0,
    total: int = 1,
    backend: str = "auto",
) -> torch.Tensor:
    """The UNet's prediction through the studio's processors, at step `step` of `total`."""
    with attention_control(unet, controls, backend=backend) as state:
        latent = tuple(inputs["sample"].shape[-2:])
        state.update(index=step, total=total, timestep=500, layout=layout, latent_size=latent)
        return unet(**inputs).sample
