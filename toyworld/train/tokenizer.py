"""Build the compact CLIP BPE vocabulary: the grammar's words as whole tokens, plus byte-level fallback.

Why: a 49k-entry embedding table would dominate the 50 MB budget. This vocabulary keeps CLIP's layout
(256 byte symbols, the same 256 with `</w>`, merges, then <|startoftext|> and <|endoftext|>), so the
stock `CLIPTokenizer` reads it, and any unknown word still tokenizes as bytes.

Merges are found greedily: for each word, simulate BPE with the merges so far and append a merge for
the first adjacent pair until the word is one token. A new merge always has the lowest priority, so it
never changes how an earlier word tokenizes.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode  # CLIP's byte -> unicode table

from ..vocab import GRAMMAR_WORDS

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 77


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE as CLIP applies it: merge the lowest-ranked adjacent pair until none applies."""
    word = list(symbols)
    while len(word) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(word, word[1:], strict=False))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        word = word[:i] + [word[i] + word[i + 1]] + word[i + 2 :]
    return word


def build_merges(words: tuple[str, ...] = GRAMMAR_WORDS) -> list[tuple[str, str]]:
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for w in words:
        symbols = list(w[:-1]) + [w[-1] + "</w>"]
        seg = _bpe(symbols, ranks)
        while len(seg) > 1:
            pair = (seg[0], seg[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            seg = _bpe(symbols, ranks)
    return merges


def write_tokenizer_files(out_dir: Path) -> CLIPTokenizer:
    """Write vocab.json + merges.txt, load them with CLIPTokenizer, save its full layout there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    merges = build_merges()
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    for a, b in merges:
        if a + b not in vocab:
            vocab.append(a + b)
    vocab += [BOS, EOS]
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    tok = CLIPTokenizer(str(out_dir / "vocab.json"), str(out_dir / "merges.txt"), model_max_length=MAX_LENGTH,
                        pad_token=EOS)
    tok.save_pretrained(str(out_dir))
    return tok
