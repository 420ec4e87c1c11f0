"""Weighted and long prompts through compel: A1111 syntax in, chunked text-encoder embeddings out.

Why compel: it is the maintained library that weighs token embeddings and chunks long prompts for diffusers'
text encoders (SD1.x/2.x and SDXL's two encoders with pooled embeddings). We hand it the (fragment, weight)
lists `pipelines.prompt_syntax` parses, so A1111's syntax needs no translation into compel's.

How the weights act (compel's rule, as in InvokeAI): a weight w > 1 scales a token's embedding away from the
empty prompt's, e + w (z - e); w < 1 blends towards the prompt with that fragment masked out. A prompt
longer than 75 tokens is split into 77-token chunks (at the last word end before the limit, so no word is
cut in two, with CLIP's BPE vocabulary; at the limit otherwise), each encoded alone and concatenated along
the sequence, as A1111 does; `BREAK` starts a new chunk. Every prompt and negative of one call is padded with empty-prompt chunks to the same count (SDXL's
zero negative with zeros). SDXL's pooled embedding is the first chunk's, without weights (as A1111).
At most `MAX_CHUNKS` chunks are kept; a longer prompt is truncated and a note says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from compel.embeddings_provider import (
    EmbeddingsProvider,
    EmbeddingsProviderMulti,
    ReturnedEmbeddingsType,
    SplitLongTextMode,
)
from torch import Tensor

from pipelines.prompt_syntax import ParsedPrompt, has_syntax, parse_prompt

MAX_CHUNKS = 8  # 8 x 75 = 600 tokens; the UNet's cross-attention cost grows with each chunk


def needs_compel(pipe, texts: Sequence[str]) -> bool:
    """Whether any text uses the syntax or is longer than one chunk; if not, diffusers' own encoding is used
    unchanged (bit-identical to before prompt syntax existed)."""
    tokenizers = [t for t in (pipe.tokenizer, getattr(pipe, "tokenizer_2", None)) if t is not None]
    for text in texts:
        if has_syntax(text):
            return True
        if any(len(t(text, truncation=False, verbose=False)["input_ids"]) > t.model_max_length for t in tokenizers):
            return True
    return False


def encode_with_compel(
    pipe, is_sdxl: bool, texts: Sequence[str | None]
) -> tuple[list[Tensor], list[Tensor | None], list[str]]:
    """Encode each text (None: SDXL's zero negative) -> (hidden states (1, k*77, D) padded to one chunk count
    k, pooled (1, P) for SDXL else None, notes for the user)."""
    provider = _provider(pipe, is_sdxl)
    chunk = pipe.tokenizer.model_max_length
    hidden: list[Tensor | None] = []
    pooled: list[Tensor | None] = []
    notes: list[str] = []
    for text in texts:
        if text is None:
            hidden.append(None)
            pooled.append(None)
            continue
        parsed = parse_prompt(text)
        z = torch.cat([_encode_segment(pipe, provider, fragments) for fragments in parsed.segments], dim=1)
        if z.shape[1] > MAX_CHUNKS * chunk:  # (1, k*77, D)
            notes.append(
                f"prompt {_quote(text)} needs {z.shape[1] // chunk} chunks of 75 tokens; "
                f"only the first {MAX_CHUNKS} are used"
            )
            z = z[:, : MAX_CHUNKS * chunk]
        hidden.append(z)
        pooled.append(_pooled(provider, parsed) if is_sdxl else None)
    like = next(z for z in hidden if z is not None)
    length = max(z.shape[1] for z in hidden if z is not None)
    parts = provider.embedding_providers if is_sdxl else [provider]
    with torch.no_grad():
        empty = torch.cat([p.empty_z for p in parts], dim=-1).to(like)  # (1, 77, D)
    padded = [_pad(z, empty, length, like) for z in hidden]
    return padded, [p if p is not None or not is_sdxl else torch.zeros_like(_first(pooled)) for p in pooled], notes


def _pad(z: Tensor | None, empty: Tensor, length: int, like: Tensor) -> Tensor:
    """(1, k*77, D) -> (1, length, D) with empty-prompt chunks appended; None -> zeros (SDXL's zero negative)."""
    if z is None:
        return torch.zeros(1, length, like.shape[-1], dtype=like.dtype, device=like.device)
    missing = (length - z.shape[1]) // empty.shape[1]
    return torch.cat([z, *[empty] * missing], dim=1) if missing else z


def _first(values: list[Tensor | None]) -> Tensor:
    return next(v for v in values if v is not None)


def _provider(pipe, is_sdxl: bool) -> EmbeddingsProvider | EmbeddingsProviderMulti:
    common = dict(
        truncate=False,
        # WORDS, not PHRASES: compel looks back without limit for punctuation, so "a cat, <100 words>" would
        # leave a 3-token first chunk (A1111 looks back at most 20 tokens for a comma)
        split_long_text_mode=SplitLongTextMode.WORDS,
        dtype_for_device_getter=lambda device: pipe.text_encoder.dtype,
    )
    if not is_sdxl:
        return EmbeddingsProvider(pipe.tokenizer, pipe.text_encoder, **common)
    return EmbeddingsProviderMulti(
        [pipe.tokenizer, pipe.tokenizer_2],
        [pipe.text_encoder, pipe.text_encoder_2],
        returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
        requires_pooled_mask=[False, True],
        **common,
    )


def _encode_segment(pipe, provider, fragments: list[tuple[str, float]]) -> Tensor:
    """One BREAK segment's weighted fragments -> (1, k*77, D); multi-vector textual inversion tokens are
    expanded first, as diffusers' `maybe_convert_prompt` does."""
    convert = getattr(pipe, "maybe_convert_prompt", None)
    fragments = [(convert(t, pipe.tokenizer) if convert else t, w) for t, w in fragments]
    # a fragment without tokens (e.g. the blank in "a [ ] b") weighs nothing, and compel cannot place it
    tokens = provider.get_token_ids([t for t, _ in fragments], include_start_and_end_markers=False)
    kept = [f for f, ids in zip(fragments, tokens, strict=True) if ids] or [("", 1.0)]
    texts, weights = [t for t, _ in kept], [w for _, w in kept]
    with torch.no_grad():
        return provider.get_embeddings_for_weighted_prompt_fragments(
            text_batch=[texts], fragment_weights_batch=[weights], device=provider.text_encoder.device
        )


def _pooled(provider: EmbeddingsProviderMulti, parsed: ParsedPrompt) -> Tensor:
    """SDXL's pooled text_encoder_2 embedding (1, P) of the first segment's text, truncated to 77 tokens."""
    text = "".join(t for t, _ in parsed.segments[0])
    with torch.no_grad():
        return provider.get_pooled_embeddings([text], device=provider.text_encoder.device)


def _quote(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
