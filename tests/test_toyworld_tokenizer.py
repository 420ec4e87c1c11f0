"""The compact CLIP tokenizer: every grammar word is one token, unknown words fall back to bytes."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import CLIPTokenizer

from toyworld.captions import caption
from toyworld.train.tokenizer import build_merges, write_tokenizer_files
from toyworld.vocab import GRAMMAR_WORDS
from toyworld.world import sample_scene


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> CLIPTokenizer:
    folder = tmp_path_factory.mktemp("tok")
    write_tokenizer_files(folder)
    return CLIPTokenizer.from_pretrained(str(folder))


def test_every_grammar_word_is_a_single_whole_word_token(tokenizer):
    for w in GRAMMAR_WORDS:
        assert tokenizer.tokenize(w) == [w + "</w>"]


def test_captions_tokenize_to_whole_words_only(tokenizer):
    rng = np.random.default_rng(0)
    for _ in range(200):
        text = caption(sample_scene(rng), rng)
        tokens = tokenizer.tokenize(text)
        words = text.replace(",", " ,").split()
        assert tokens == [w + "</w>" for w in words]
        assert len(tokenizer(text).input_ids) <= tokenizer.model_max_length


def test_unknown_words_fall_back_to_bytes(tokenizer):
    text = "zebra über"
    ids = tokenizer(text).input_ids
    assert tokenizer.unk_token_id not in ids[1:-1] or tokenizer.unk_token_id is None
    assert tokenizer.decode(ids, skip_special_tokens=True).strip() == text


def test_sd_conventions(tokenizer):
    assert tokenizer.model_max_length == 77
    ids = tokenizer("a red circle", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(tokenizer) < 1024  # compact: grammar words + 512 byte symbols + specials


def test_merges_are_deterministic():
    assert build_merges() == build_merges()
