"""ClassDiffusion: the semantic preservation loss against an independent computation, its gradient reaching only
the tuned parameters, and the file applied and restored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipelines.backbone import Backbone
from pipelines.text_to_image import generate
from pipelines.tuning.classdiffusion import ClassDiffusionRecipe, cross_kv_names, spl_term
from pipelines.tuning.classdiffusion_apply import applied_classdiffusion
from pipelines.tuning.files import RECIPE_KEY
from pipelines.tuning.recipe import trainable_parameters
from tests.tuning_helpers import PROMPT, tiny_backbone, trained


def _eos_feature(backbone: Backbone, text: str) -> torch.Tensor:
    """The text encoder's final hidden state at the first end-of-text token (CLIP's pooling), by hand."""
    tokenizer, encoder = backbone.pipe.tokenizer, backbone.pipe.text_encoder
    ids = tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids  # (1, 77)
    hidden = encoder(ids, output_hidden_states=True).last_hidden_state  # (1, 77, D)
    eos = int((ids[0] == tokenizer.eos_token_id).nonzero()[0])
    return hidden[0, eos]


def test_spl_equals_an_independent_computation_and_its_gradient_reaches_only_the_new_token():
    backbone = tiny_backbone("sd15")
    recipe = ClassDiffusionRecipe(token="sks", cls="star")
    recipe.prepare(backbone, seed=0)
    term = spl_term(backbone, "sks", "star")
    with torch.no_grad():
        a, b = _eos_feature(backbone, "a photo of a sks star"), _eos_feature(backbone, "a photo of a star")
        expected = 1 - F.cosine_similarity(a, b, dim=0)
    torch.testing.assert_close(term.detach(), expected, atol=1e-6, rtol=0)
    term.backward()
    recipe.mask_gradients(backbone)
    table = backbone.pipe.text_encoder.get_input_embeddings().weight
    new_id = recipe.token_ids["text_encoder"]
    assert table.grad[new_id].abs().sum() > 0
    assert table.grad[torch.arange(table.shape[0]) != new_id].abs().sum() == 0
    for name, param in backbone.pipe.unet.named_parameters():  # the SPL does not reach the UNet
        assert param.grad is None or param.grad.abs().sum() == 0, name
    tuned = set(trainable_parameters(backbone))
    kv = {f"unet.{n}.weight" for n in cross_kv_names(backbone.pipe.unet)}
    cross = sum(1 for m in backbone.pipe.unet.modules() if getattr(m, "is_cross_attention", False))
    assert kv <= tuned and len(kv) == 2 * cross  # K and V of every cross-attention
    assert [k for k in tuned - kv] == [k for k in tuned - kv if k.endswith("token_embedding.weight")] != []


def test_training_changes_only_the_new_row_and_cross_attention_kv():
    fresh = tiny_backbone("sd15")
    before = {n: p.detach().clone() for n, p in fresh.pipe.unet.named_parameters()}
    table_before = fresh.pipe.text_encoder.get_input_embeddings().weight.detach().clone()
    backbone, result = trained(ClassDiffusionRecipe(token="sks", cls="star"), lr=1e-2)
    assert "spl" in result.extra and len(result.extra["spl"]) == 2
    for name, param in backbone.pipe.unet.named_parameters():
        changed = not torch.equal(param.detach(), before[name])
        assert changed == name.endswith(("attn2.to_k.weight", "attn2.to_v.weight")), name
    table = backbone.pipe.text_encoder.get_input_embeddings().weight.detach()
    assert torch.equal(table[: table_before.shape[0]], table_before)  # weight decay spared the other rows


def test_classdiffusion_file_applies_and_restores(tmp_path: Path):
    import json

    backbone, _ = trained(ClassDiffusionRecipe(token="sks", cls="star"), lr=1e-2)
    meta = {RECIPE_KEY: json.dumps({"recipe": "classdiffusion", "token": "sks", "class": "star"})}
    path = ClassDiffusionRecipe(token="sks", cls="star").save(backbone, tmp_path / "cd.safetensors", meta)
    target = tiny_backbone("sd15")
    kv = {n: p.detach().clone() for n, p in target.pipe.unet.named_parameters() if "attn2.to_" in n}
    vocab = len(target.pipe.tokenizer)
    run = {"num_inference_steps": 2, "width": 64, "height": 64}
    base = generate(target, PROMPT, generator=torch.Generator().manual_seed(0), **run).latents
    with applied_classdiffusion(target, path) as token:
        assert token == "sks" and len(target.pipe.tokenizer) == vocab + 1
        tuned = generate(target, PROMPT, generator=torch.Generator().manual_seed(0), **run).latents
        reference = generate(backbone, PROMPT, generator=torch.Generator().manual_seed(0), **run).latents
    torch.testing.assert_close(tuned, reference, atol=1e-5, rtol=0)
    assert (tuned - base).abs().max() > 1e-3
    assert len(target.pipe.tokenizer) == vocab
    assert all(torch.equal(p.detach(), kv[n]) for n, p in target.pipe.unet.named_parameters() if n in kv)
    again = generate(target, PROMPT, generator=torch.Generator().manual_seed(0), **run).latents
    torch.testing.assert_close(again, base, atol=0, rtol=0)


@pytest.mark.slow
def test_sdxl_learns_the_token_in_both_text_encoders_and_the_file_reproduces_it(tmp_path: Path):
    import json

    backbone, result = trained(ClassDiffusionRecipe(token="sks", cls="star"), family="sdxl", steps=1, lr=1e-2)
    assert result.extra["spl"][0] > 0
    meta = {RECIPE_KEY: json.dumps({"recipe": "classdiffusion", "token": "sks", "class": "star"})}
    path = ClassDiffusionRecipe(token="sks", cls="star").save(backbone, tmp_path / "xl.safetensors", meta)
    target = tiny_backbone("sdxl")
    run = {"num_inference_steps": 2, "width": 64, "height": 64}
    with applied_classdiffusion(target, path):
        assert "sks" in target.pipe.tokenizer.get_vocab() and "sks" in target.pipe.tokenizer_2.get_vocab()
        tuned = generate(target, PROMPT, generator=torch.Generator().manual_seed(0), **run).latents
    reference = generate(backbone, PROMPT, generator=torch.Generator().manual_seed(0), **run).latents
    torch.testing.assert_close(tuned, reference, atol=1e-5, rtol=0)
