"""Localized attention-guided sampling (LAG) for personalized residuals: each block's residual applies only where
its identifier+class cross-attention mask is on, f = (1 - M) W x + M (W + A B) x = W x + M (A B x).

Why forward hooks on `proj_out` (installed here and removed in `finally`): the residual lives in the block's
output projection, after the attention the studio's processors control. The hook reads the residual adapter's
own branch (peft's lora_A/lora_B/scaling of that adapter alone, so another LoRA on the same layer is untouched)
and keeps M of it; the masks come from `BlockTokenMaps`, computed in the same UNet call just before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from attention_processors.block_maps import BlockTokenMaps, block_of
from pipelines.backbone import Backbone
from pipelines.tuning.lora import ADAPTER
from pipelines.tuning.residuals import block_proj_outs
from pipelines.tuning.settings import LAG

MaskOverride = Callable[[str, int, int], Tensor]  # (block, batch rows, query tokens) -> [B, Lq] in [0, 1]


def token_positions(tokenizer, prompt: str, words: Sequence[str]) -> list[int]:
    """Positions (BOS = 0) of every token of each word's first occurrence in the tokenized prompt."""
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    found: list[int] = []
    for word in words:
        piece = tokenizer(word, add_special_tokens=False).input_ids
        starts = [i for i in range(1, len(ids) - len(piece) + 1) if ids[i : i + len(piece)] == piece]
        if not piece or not starts:
            raise ValueError(f"LAG needs the prompt to contain {word!r}; it does not: {prompt!r}")
        found += list(range(starts[0], starts[0] + len(piece)))
    return found


def _residual_layers(unet: torch.nn.Module, adapter: str) -> dict[str, torch.nn.Module]:
    layers = {}
    for path in block_proj_outs(unet):
        module = unet.get_submodule(path)
        if adapter in getattr(module, "lora_A", {}):
            layers[path] = module
    return layers


@contextlib.contextmanager
def lag_residuals(
    backbone: Backbone,
    prompts: str | Sequence[str],
    token: str,
    cls: str,
    *,
    adapter: str = ADAPTER,
    threshold: float = LAG.threshold,
    mask_override: MaskOverride | None = None,
) -> Iterator[list[BlockTokenMaps]]:
    """Gate the residual adapter `adapter` per block for the duration; yields the control to pass to a pipeline.

    `prompts`: one per stream item, or one string for every item. `mask_override` replaces the
    attention masks (tests: all ones must equal the residuals everywhere, all zeros the base model).
    """
    tokenizer = backbone.pipe.tokenizer
    if isinstance(prompts, str):
        tokens = {-1: token_positions(tokenizer, prompts, [token, cls])}
    else:
        tokens = {i: token_positions(tokenizer, p, [token, cls]) for i, p in enumerate(prompts)}
    layers = _residual_layers(backbone.unet, adapter)
    if not layers:
        raise ValueError(f"no residuals named {adapter!r} are loaded on this UNet's proj_out layers")
    maps = BlockTokenMaps(tokens, frozenset(block_of(p.removesuffix(".proj_out")) for p in layers), threshold)
    handles = []
    try:
        for path, module in layers.items():
            handles.append(
                module.register_forward_hook(
                    _gate(maps, block_of(path.removesuffix(".proj_out")), adapter, mask_override)
                )
            )
        yield [maps]
    finally:
        for handle in handles:
            handle.remove()


def _gate(maps: BlockTokenMaps, block: str, adapter: str, override: MaskOverride | None):
    def hook(module: torch.nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        if adapter not in module.active_adapters or getattr(module, "disable_adapters", False):
            return output
        x = inputs[0]
        branch = module.lora_B[adapter](module.lora_A[adapter](module.lora_dropout[adapter](x)))
        delta = branch * module.scaling[adapter]  # the residual's share of the output
        rows = output.shape[0]
        tokens = output.shape[2] * output.shape[3] if output.ndim == 4 else output.shape[1]
        found = maps.take(block)
        if override is not None:
            mask = override(block, rows, tokens).to(output)  # [B, Lq]
        else:
            mask = torch.ones(rows, tokens, dtype=output.dtype, device=output.device)  # [B, Lq]
            layout = maps.layout
            for r in range(rows):
                item = layout.entries[r].item if layout is not None else r  # type: ignore[attr-defined]
                if item in found:
                    mask[r] = found[item].to(output)
        if output.ndim == 4:  # conv proj_out: (B, C, h, w)
            gate = mask.view(rows, 1, output.shape[2], output.shape[3])
        else:  # linear proj_out: (B, Lq, C)
            gate = mask.view(rows, tokens, 1)
        if list(module.active_adapters) == [adapter]:  # the residual alone: rebuild peft's sum, exact at M = 0 and 1
            return module.base_layer(x) + gate * delta
        return output - (1 - gate) * delta  # other adapters on this layer keep their full share

    return hook
