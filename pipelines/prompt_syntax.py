"""AUTOMATIC1111's prompt syntax, parsed in linear time into weighted fragments, BREAK segments and LoRA tags.

Syntax (as A1111's `parse_prompt_attention`): `(text)` weighs 1.1, `[text]` 1/1.1, `(text:1.5)` 1.5; brackets
nest and multiply; an unclosed bracket runs to the end; `\\(`, `\\)`, `\\[`, `\\]` and `\\\\` are literal;
an unmatched `)`, `]` or `:` is literal text. `BREAK` (upper case, a word of its own) starts a new 77-token
chunk. `<lora:NAME:SCALE>` (SCALE defaults to 1) is removed from the text and returned for the caller to load.
A1111's prompt editing (`[a:b:0.5]`) and alternation (`[a|b]`) are not supported: they read as text.

Why our own parser: compel's syntax differs (`(word)1.3`, `word+`), so A1111 prompts are parsed here and
handed to compel as (fragment, weight) lists, which its embeddings provider weights and chunks.
A1111 re-multiplies every enclosed fragment at each closing bracket (quadratic in the nesting depth); here
each family of brackets (round, square) nests properly, so one sweep with a stack per family gives every
fragment's product of enclosing multipliers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

ROUND_MULTIPLIER = 1.1  # A1111's `(text)`
SQUARE_MULTIPLIER = 1 / 1.1  # A1111's `[text]`

_TOKEN = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
_LORA = re.compile(r"<lora:([^:<>]+)(?::([^:<>]*))?>")
_SYNTAX = re.compile(r"[()\[\]\\]|\bBREAK\b|<lora:")

Fragments = list[tuple[str, float]]  # (text, weight), consecutive equal weights merged


@dataclass(frozen=True)
class ParsedPrompt:
    segments: list[Fragments]  # one per BREAK-separated part; each starts a new chunk
    loras: list[tuple[str, float]]  # (name, scale) of each <lora:...> tag, in order

    @property
    def weighted(self) -> bool:
        return any(w != 1.0 for segment in self.segments for _, w in segment)


def has_syntax(prompt: str) -> bool:
    """Whether `prompt` uses any of the syntax above; a prompt without it reads as plain text."""
    return _SYNTAX.search(prompt) is not None


def extract_loras(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """(the prompt without its `<lora:NAME:SCALE>` tags, the (name, scale) pairs in order)."""
    loras = []
    for match in _LORA.finditer(prompt):
        name, scale = match.group(1).strip(), match.group(2)
        try:
            loras.append((name, 1.0 if scale is None or not scale.strip() else float(scale)))
        except ValueError:
            raise ValueError(f"LoRA tag {match.group(0)!r} has scale {scale!r}; write <lora:NAME:0.8>") from None
    return _LORA.sub("", prompt), loras


def parse_prompt(prompt: str) -> ParsedPrompt:
    """Parse an A1111 prompt: LoRA tags out, then weighted fragments per BREAK segment."""
    text, loras = extract_loras(prompt)
    items: list[str | None] = []  # text pieces; None marks a BREAK
    brackets: dict[str, list[int]] = {"(": [], "[": []}  # open bracket -> start index in `items`
    ranges: list[tuple[int, int, float, str]] = []  # (start, end, multiplier, family) of each bracket
    for match in _TOKEN.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            items.append(piece[1:])
        elif piece in brackets:
            brackets[piece].append(len(items))
        elif weight is not None and brackets["("]:
            ranges.append((brackets["("].pop(), len(items), float(weight), "("))
        elif piece == ")" and brackets["("]:
            ranges.append((brackets["("].pop(), len(items), ROUND_MULTIPLIER, "("))
        elif piece == "]" and brackets["["]:
            ranges.append((brackets["["].pop(), len(items), SQUARE_MULTIPLIER, "["))
        else:
            for i, part in enumerate(_BREAK.split(piece)):
                if i:
                    items.append(None)
                items.append(part)
    for family, multiplier in (("(", ROUND_MULTIPLIER), ("[", SQUARE_MULTIPLIER)):
        ranges.extend((start, len(items), multiplier, family) for start in brackets[family])
    weights = _sweep(len(items), ranges)
    if not all(math.isfinite(w) for w in weights):
        raise ValueError("a prompt weight overflows: too many nested brackets")
    segments: list[Fragments] = [[]]
    for piece, weight in zip(items, weights, strict=True):
        if piece is None:
            segments.append([])
        elif piece:
            segment = segments[-1]
            if segment and segment[-1][1] == weight:
                segment[-1] = (segment[-1][0] + piece, weight)
            else:
                segment.append((piece, weight))
    return ParsedPrompt(segments=[s or [("", 1.0)] for s in segments], loras=loras)


def _sweep(count: int, ranges: list[tuple[int, int, float, str]]) -> list[float]:
    """Each item's product of the multipliers of the bracket ranges [start, end) that hold it.

    Ranges of one family are laminar (nested or disjoint), so a stack per family holds the running products;
    opens at an index are pushed outermost first (longest range first), closes popped innermost first.
    """
    opens: list[list[tuple[int, float, str]]] = [[] for _ in range(count + 1)]
    closes: list[list[str]] = [[] for _ in range(count + 1)]
    for start, end, multiplier, family in ranges:
        if end > start:  # an empty bracket weighs nothing
            opens[start].append((end, multiplier, family))
            closes[end].append(family)
    stacks: dict[str, list[float]] = {"(": [1.0], "[": [1.0]}
    weights = []
    for i in range(count):
        for family in closes[i]:
            stacks[family].pop()
        for _, multiplier, family in sorted(opens[i], key=lambda o: -o[0]):
            stacks[family].append(stacks[family][-1] * multiplier)
        weights.append(stacks["("][-1] * stacks["["][-1])
    return weights
