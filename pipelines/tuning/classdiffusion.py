"""ClassDiffusion (Huang et al., ICLR 2025, arXiv 2405.17532): Custom Diffusion's tuned set plus the semantic
preservation loss.

What learns: the cross-attention key and value projections (`attn2.to_k`, `attn2.to_v`) and one new token's
input embedding, as in Custom Diffusion. The semantic preservation loss (SPL) keeps the personalised phrase
close to its class in the text encoder's pooled space:

    L_SPL = 1 - cos(E("a photo of a <new> <cls>"), E("a photo of a <cls>"))

E is the text encoder's pooled output (SDXL: the mean of the term over both encoders). The official code
re-implements CLIP's text forward to inject the embedding, which breaks on transformers 5; here the new token is
a row of the embedding table, so the stock text encoder runs unchanged. Only that row learns: the other rows'
gradients are zeroed and the table is exempt from weight decay, so AdamW leaves them bit-exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pipelines.backbone import Backbone
from pipelines.tuning.files import write_weights
from pipelines.tuning.recipe import Recipe, freeze
from pipelines.tuning.settings import CLASSDIFFUSION

SPL_PHRASE = "a photo of a {token} {cls}"
EMBEDDING_KEY = "{encoder}.token_embedding"  # (1, D) the new token's row, one per text encoder


def text_pairs(backbone: Backbone) -> list[tuple[str, Any, Any]]:
    """(name, tokenizer, text encoder) of each text tower: one for SD1.x/2.x, two for SDXL."""
    pipe = backbone.pipe
    pairs = [("text_encoder", pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        pairs.append(("text_encoder_2", pipe.tokenizer_2, pipe.text_encoder_2))
    return pairs


def cross_kv_names(unet: torch.nn.Module) -> list[str]:
    """Module paths of every cross-attention key/value projection."""
    return [n for n, _ in unet.named_modules() if n.endswith(("attn2.to_k", "attn2.to_v"))]


def pooled(encoder: Any, ids: Tensor) -> Tensor:
    """The tower's pooled output: `text_embeds` of a projection model (SDXL's second tower), else `pooler_output`."""
    out = encoder(ids)
    return out.text_embeds if hasattr(out, "text_embeds") else out.pooler_output  # (B, D)


def spl_term(backbone: Backbone, token: str, cls: str) -> Tensor:
    """1 - cos(E(with the token), E(class only)), averaged over the text towers."""
    terms = []
    for _, tokenizer, encoder in text_pairs(backbone):
        phrases = [SPL_PHRASE.format(token=token, cls=cls), SPL_PHRASE.replace("{token} ", "").format(cls=cls)]
        ids = tokenizer(
            phrases, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(backbone.device)  # (2, L)
        emb = pooled(encoder, ids).float()  # (2, D)
        terms.append(1 - F.cosine_similarity(emb[0:1], emb[1:2]).squeeze(0))
    return torch.stack(terms).mean()


@dataclass
class ClassDiffusionRecipe(Recipe):
    token: str = ""
    cls: str = ""
    spl_weight: float = CLASSDIFFUSION.spl_weight
    name: str = "classdiffusion"
    trains_text: bool = True
    token_ids: dict[str, int] = field(default_factory=dict, init=False)

    def prepare(self, backbone: Backbone, seed: int) -> None:
        freeze(backbone)
        for name, tokenizer, encoder in text_pairs(backbone):
            if tokenizer.add_tokens([self.token]) == 0:
                raise ValueError(f"the token {self.token!r} is already in this model's vocabulary; pick a new word")
            new_id = tokenizer.convert_tokens_to_ids(self.token)
            encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            table = encoder.get_input_embeddings().weight
            class_ids = tokenizer(self.cls, add_special_tokens=False).input_ids
            with torch.no_grad():  # start from the class word: the new token first means "a <cls>"
                table[new_id] = table[class_ids].mean(0)
            table.requires_grad_(True)
            self.token_ids[name] = new_id
        for path in cross_kv_names(backbone.unet):
            backbone.unet.get_submodule(path).weight.requires_grad_(True)

    def extra_loss(self, backbone: Backbone) -> tuple[Tensor, dict[str, float]] | None:
        if self.spl_weight == 0:
            return None
        term = spl_term(backbone, self.token, self.cls)
        return self.spl_weight * term, {"spl": float(term.detach())}

    def mask_gradients(self, backbone: Backbone) -> None:
        for name, _, encoder in text_pairs(backbone):
            weight = encoder.get_input_embeddings().weight
            if weight.grad is not None:
                keep = torch.zeros_like(weight.grad[:, :1])  # (V, 1)
                keep[self.token_ids[name]] = 1
                weight.grad.mul_(keep)

    def no_decay(self, name: str) -> bool:
        return "embed" in name

    def save(self, backbone: Backbone, path: Path, metadata: dict[str, str]) -> Path:
        tensors = {}
        for name, tokenizer, encoder in text_pairs(backbone):
            row = encoder.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids(self.token)]
            tensors[EMBEDDING_KEY.format(encoder=name)] = row[None].float()  # (1, D)
        for module_path in cross_kv_names(backbone.unet):
            tensors[f"unet.{module_path}.weight"] = backbone.unet.get_submodule(module_path).weight.float()
        return write_weights(path, tensors, metadata)

    def parameter_count(self, backbone: Backbone) -> int:
        kv = sum(backbone.unet.get_submodule(p).weight.numel() for p in cross_kv_names(backbone.unet))
        rows = sum(e.get_input_embeddings().weight.shape[1] for _, _, e in text_pairs(backbone))
        return kv + rows

    def describe(self) -> dict[str, Any]:
        return {"recipe": self.name, "spl_weight": self.spl_weight, "token": self.token, "class": self.cls}
