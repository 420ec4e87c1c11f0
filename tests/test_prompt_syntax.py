"""A1111 prompt syntax: the parser against A1111's own algorithm, LoRA tags, and the encoding through compel.

Oracle for the parser: `a1111_parse`, a transcription of `parse_prompt_attention` from AUTOMATIC1111's
stable-diffusion-webui (modules/prompt_parser.py), quadratic in the nesting depth but plainly correct.
Oracle for the encoding: diffusers' own `encode_prompt` for prompts that need no syntax.
"""

from __future__ import annotations

import random
import re

import pytest
import torch

from pipelines import Backbone
from pipelines.prompt_encoder import MAX_CHUNKS
from pipelines.prompt_syntax import extract_loras, parse_prompt
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline

_A1111_ATTENTION = re.compile(
    r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:", re.X
)
_A1111_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def a1111_parse(text: str) -> list[list]:
    res: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for m in _A1111_ATTENTION.finditer(text):
        piece, weight = m.group(0), m.group(1)
        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])
        elif piece == "(":
            round_brackets.append(len(res))
        elif piece == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif piece == ")" and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif piece == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(re.split(_A1111_BREAK, piece)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for pos in round_brackets:
        multiply_range(pos, 1.1)
    for pos in square_brackets:
        multiply_range(pos, 1 / 1.1)
    return res


def as_segments(res: list[list]) -> list[list[tuple[str, float]]]:
    """A1111's flat list -> our segments: split at BREAK markers, drop empty texts, merge equal weights."""
    segments: list[list[tuple[str, float]]] = [[]]
    for text, weight in res:
        if text == "BREAK" and weight < 0:
            segments.append([])
        elif text:
            segments[-1].append((text, weight))
    merged = []
    for segment in segments:
        out: list[tuple[str, float]] = []
        for text, weight in segment:
            if out and out[-1][1] == pytest.approx(weight, rel=1e-12):
                out[-1] = (out[-1][0] + text, out[-1][1])
            else:
                out.append((text, weight))
        merged.append(out or [("", 1.0)])
    return merged


def assert_same_segments(ours, expected) -> None:
    assert [[t for t, _ in s] for s in ours] == [[t for t, _ in s] for s in expected]
    assert [w for s in ours for _, w in s] == pytest.approx([w for s in expected for _, w in s], rel=1e-12)


TRICKY = [
    "a red star",
    "(red:1.5) star",
    "a (red) [blue] ((star))",
    "a \\(literal\\) paren and a \\[bracket\\]",
    "unclosed (red star",
    "unclosed [blue star",
    "x BREAK y BREAK z",
    "(a [b) c]",
    "a :1.2) b ] c : d",
    "((a:1.5) b:0.5)",
    "(a:-0.5) b",
    "( spaced : 1.3 ) x",
    "a\\b\\\\c",
    "()empty[]",
    "(red BREAK blue)",
]


@pytest.mark.parametrize("text", TRICKY)
def test_parser_matches_a1111(text):
    assert_same_segments(parse_prompt(text).segments, as_segments(a1111_parse(text)))


def test_parser_matches_a1111_on_random_strings():
    rng = random.Random(0)
    alphabet = ["(", ")", "[", "]", ":", "1.3", ":0.5)", "\\", "\\(", " BREAK ", "a", "b c", " "]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        assert_same_segments(parse_prompt(text).segments, as_segments(a1111_parse(text)))


def test_parser_is_linear_in_nesting_depth():
    """50 000 nested brackets parse in one sweep (A1111's algorithm: ~1e9 steps); the weight is the product."""
    depth = 50_000
    parsed = parse_prompt("(" * depth + "a" + ":1)" * (depth - 1) + ":2)")
    assert parsed.segments == [[("a", 2.0)]]
    with pytest.raises(ValueError, match="weight overflows"):
        parse_prompt("(" * 8000 + "a")


def test_lora_tags_are_parsed_and_stripped():
    text, loras = extract_loras("<lora:detail_tweaker:0.6> a cat, <lora:style> (red:1.2) hat <lora:x:-1>")
    assert loras == [("detail_tweaker", 0.6), ("style", 1.0), ("x", -1.0)]
    assert text == " a cat,  (red:1.2) hat "
    assert parse_prompt("<lora:a:0.5>(red:1.2) hat").loras == [("a", 0.5)]
    with pytest.raises(ValueError, match="LoRA tag '<lora:a:big>' has scale 'big'"):
        extract_loras("<lora:a:big>")


# ---- encoding -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def backbone(request) -> Backbone:
    build = tiny_sd15_pipeline if request.param == "sd15" else tiny_sdxl_pipeline
    return Backbone.from_pipeline(build())


def diffusers_embeds(backbone: Backbone, prompts, negatives):
    if backbone.is_sdxl:
        return backbone.pipe.encode_prompt(
            prompt=prompts, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
            negative_prompt=negatives,
        )  # fmt: skip
    return backbone.pipe.encode_prompt(prompts, "cpu", 1, True, negative_prompt=negatives)


def test_plain_prompts_are_diffusers_bit_for_bit(backbone):
    embeds = backbone.encode_prompts(["a red cube", "a cat"], ["ugly", ""], cfg=True)
    stock = diffusers_embeds(backbone, ["a red cube", "a cat"], ["ugly", ""])
    assert torch.equal(embeds.cond, stock[0]) and torch.equal(embeds.uncond, stock[1])
    if backbone.is_sdxl:
        assert torch.equal(embeds.cond_pooled, stock[2]) and torch.equal(embeds.uncond_pooled, stock[3])
    assert embeds.notes == ()


@pytest.mark.parametrize("negatives", [None, ["ugly", ""]])
def test_compel_path_equals_diffusers_for_plain_prompts(backbone, negatives):
    """The syntax path, forced on prompts without syntax, reproduces diffusers (measured: hidden states exact,
    SDXL pooled 3.6e-7 from encoding one prompt at a time), so syntax changes only what it says."""
    ours = backbone._encode_with_syntax(["a red cube", "a cat"], negatives, True)
    stock = diffusers_embeds(backbone, ["a red cube", "a cat"], negatives)
    for got, want in zip([ours.cond, ours.uncond, ours.cond_pooled, ours.uncond_pooled], stock, strict=False):
        if got is not None:
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_weight_one_and_escaped_parentheses(backbone):
    plain = backbone.encode_prompts(["a (red) cube"], None, cfg=False)  # weighted: (red) is 1.1
    same = backbone.encode_prompts(["a (red:1.0) cube"], None, cfg=False)
    literal = backbone.encode_prompts(["a \\(red\\) cube"], None, cfg=False)
    stock = backbone._encode_with_syntax(["a (red) cube"], None, False)  # forced: but parsed, so weighted too
    torch.testing.assert_close(same.cond, backbone.encode_prompts(["a red cube"], None, cfg=False).cond)
    assert not torch.allclose(plain.cond, same.cond)
    tokens = backbone.pipe.tokenizer("a (red) cube")["input_ids"]
    assert len(tokens) == 7  # "(" and ")" are tokens of their own: the literal prompt keeps them
    assert not torch.allclose(literal.cond, same.cond)
    assert torch.equal(stock.cond, plain.cond)


def test_long_prompts_chunk_and_negatives_pad(backbone):
    long = "a red cube, " * 40  # ~160 tokens: three chunks
    embeds = backbone.encode_prompts([long, "a cat"], ["ugly", "ugly BREAK bad"], cfg=True)
    assert embeds.cond.shape[1] == embeds.uncond.shape[1] == 3 * 77
    single = backbone.encode_prompts(["a cat"], None, cfg=True)
    torch.testing.assert_close(embeds.cond[1, :77], single.cond[0], atol=1e-6, rtol=0)  # padded after
    empty = backbone.encode_prompts([""], None, cfg=False).cond[0]  # (77, D)
    torch.testing.assert_close(embeds.cond[1, 77:154], empty, atol=1e-6, rtol=0)  # padding: empty chunks
    broken = backbone.encode_prompts(["a cat BREAK a hat"], None, cfg=False).cond
    hat = backbone.encode_prompts(["a hat"], None, cfg=False).cond
    torch.testing.assert_close(broken[0, 77:], hat[0], atol=1e-6, rtol=0)  # BREAK: "a hat" opens chunk 2
    if backbone.is_sdxl:  # no negative: SDXL's zeros, padded with zeros
        zeros = backbone.encode_prompts([long], None, cfg=True)
        assert zeros.uncond.shape[1] == 3 * 77 and not zeros.uncond.any() and not zeros.uncond_pooled.any()


def test_any_syntax_encodes(backbone):
    """Random A1111-syntax strings (blank weighted fragments, zero and negative weights, BREAKs) all encode."""
    rng = random.Random(1)
    alphabet = ["(", ")", "[", "]", ":", ":0.5)", ":0)", ":-1)", "\\(", " BREAK ", "red", " star", " ", ","]
    texts = ["a [ ] b", "[ ]", "(:0.5)", "BREAK BREAK", ""]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(40)]
    for text in texts:
        embeds = backbone.encode_prompts([text], [text], cfg=True)
        assert embeds.cond.shape == embeds.uncond.shape and torch.isfinite(embeds.cond).all(), text


def test_chunks_are_filled_before_splitting(backbone):
    """103 tokens after an early comma make two chunks, not three (no 3-token chunk ending at the comma)."""
    embeds = backbone.encode_prompts(["a cat, " + "dog " * 100], None, cfg=False)
    assert embeds.cond.shape[1] == 2 * 77


def test_truncation_beyond_the_chunk_limit_says_so(backbone):
    text = "red, " * (40 * MAX_CHUNKS)
    embeds = backbone.encode_prompts([text], None, cfg=False)
    assert embeds.cond.shape[1] == MAX_CHUNKS * 77
    assert len(embeds.notes) == 1 and f"only the first {MAX_CHUNKS} are used" in embeds.notes[0]
