"""Convert CLIP's BPE vocabulary into CLIPTokenizer's `vocab.json` + `merges.txt`.

Why: tests and the demo must build a real CLIP tokenizer with no network. The open_clip wheel ships the
original BPE file (`open_clip/bpe_simple_vocab_16e6.txt.gz`); this turns it into the files
`transformers.CLIPTokenizer` reads. Only the converted files are committed.

Usage: pip download --no-deps -d /tmp/oc open_clip_torch
       python convert_open_clip_bpe.py /tmp/oc/open_clip_torch-*.whl
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from pathlib import Path

from transformers.convert_slow_tokenizer import bytes_to_unicode  # CLIP's byte -> unicode table


def convert(wheel: Path, out_dir: Path) -> int:
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read("open_clip/bpe_simple_vocab_16e6.txt.gz")).decode("utf-8")
    merges = [tuple(line.split()) for line in raw.split("\n")[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (out_dir / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return len(vocab)


if __name__ == "__main__":
    n = convert(Path(sys.argv[1]), Path(__file__).parent)
    print(f"wrote {n} tokens")
