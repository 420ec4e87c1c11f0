"""Using a ClassDiffusion file: its token added (diffusers' textual-inversion loader) and its cross-attention
K/V weights swapped in for a block, everything put back in `finally`.

Why a swap, not a processor: diffusers' Custom Diffusion processors hold their own K/V copies and would displace
the studio's processors; writing the tuned weights into `attn2.to_k/to_v` keeps every control composable
(a peft LoRA on the same projection keeps wrapping it: the base weight under it is what changes).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import safetensors.torch
import torch

from pipelines.backbone import Backbone
from pipelines.tuning.classdiffusion import EMBEDDING_KEY, text_pairs
from pipelines.tuning.files import RECIPE_KEY, read_header


def _weight_of(unet: torch.nn.Module, key: str) -> torch.nn.Parameter:
    """`unet.<path>.weight` -> the parameter, under a peft wrapper's base layer when one is there."""
    path = key.removeprefix("unet.").removesuffix(".weight")
    try:
        module = unet.get_submodule(path)
    except AttributeError:
        raise ValueError(f"this model has no layer {path}") from None
    return getattr(module, "base_layer", module).weight


@contextlib.contextmanager
def applied_classdiffusion(backbone: Backbone, path: Path) -> Iterator[str]:
    """Yield the file's token while its embedding and K/V weights are in the pipeline; restore on exit."""
    recipe = json.loads(read_header(path).get(RECIPE_KEY, "{}"))
    token = recipe.get("token")
    if not token or recipe.get("recipe") != "classdiffusion":
        raise ValueError(f"{path.name} is not a ClassDiffusion file made by `studio train classdiffusion`")
    tensors = safetensors.torch.load_file(str(path))
    pairs = text_pairs(backbone)
    kv = {k: v for k, v in tensors.items() if k.startswith("unet.")}
    targets = {k: _weight_of(backbone.unet, k) for k in kv}
    for key, value in kv.items():
        if targets[key].shape != value.shape:
            raise ValueError(f"{key}: shape {tuple(value.shape)} does not fit this model {tuple(targets[key].shape)}")
    originals = {k: w.detach().clone() for k, w in targets.items()}
    loaded = False
    try:
        for name, tokenizer, encoder in pairs:
            row = tensors.get(EMBEDDING_KEY.format(encoder=name))
            if row is None or row.shape[-1] != encoder.get_input_embeddings().weight.shape[1]:
                raise ValueError(f"{path.name} has no token embedding for this model's {name}")
            backbone.pipe.load_textual_inversion(row[0], token=token, tokenizer=tokenizer, text_encoder=encoder)
            loaded = True
        with torch.no_grad():
            for key, weight in targets.items():
                weight.copy_(kv[key].to(weight))
        yield token
    finally:
        with torch.no_grad():
            for key, weight in targets.items():
                weight.copy_(originals[key])
        if loaded:
            for _, tokenizer, encoder in pairs:
                if token in tokenizer.get_vocab():
                    backbone.pipe.unload_textual_inversion(tokens=[token], tokenizer=tokenizer, text_encoder=encoder)
