"""Toy CLIP-T (text-image) and CLIP-I (image-image) scores: cosine similarity of toy-CLIP embeddings.

Why toy-CLIP: it was trained contrastively on toyworld scenes and captions, so its embedding space
knows colours, shapes and positions. Images are preprocessed exactly as in training (64x64, CLIP
mean/std). Scores are plain cosines in [-1, 1]; comparisons only make sense under the same model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from studio.toyworld.data import to_clip_input
from studio.toyworld.detector import as_array


def _pixels(images: Sequence[np.ndarray | Image.Image]) -> torch.Tensor:
    arrays = [as_array(im) for im in images]
    for a in arrays:
        if a.shape[:2] != (64, 64):
            raise ValueError(f"toy-CLIP expects 64x64 images, got {a.shape[:2]}")
    return to_clip_input(np.stack(arrays))  # (B, 3, 64, 64)


def _features(out) -> torch.Tensor:
    """transformers returns a tensor or an output object (with pooler_output) depending on version."""
    feats = out if isinstance(out, torch.Tensor) else out.pooler_output
    return torch.nn.functional.normalize(feats, dim=-1)


@torch.no_grad()
def image_embeddings(clip, images: Sequence[np.ndarray | Image.Image]) -> torch.Tensor:
    """(B, P) unit-norm image embeddings."""
    return _features(clip.get_image_features(pixel_values=_pixels(images)))


@torch.no_grad()
def text_embeddings(clip, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """(B, P) unit-norm text embeddings (77-token padding, as the pipeline tokenizes)."""
    ids = tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return _features(clip.get_text_features(input_ids=ids))


def clip_t(clip, tokenizer, images: Sequence[np.ndarray | Image.Image], texts: Sequence[str]) -> np.ndarray:
    """(B,) cosine between each image and its text."""
    return (image_embeddings(clip, images) * text_embeddings(clip, tokenizer, texts)).sum(-1).numpy()


def clip_i(clip, images: Sequence[np.ndarray | Image.Image],
           references: Sequence[np.ndarray | Image.Image]) -> np.ndarray:
    """(B,) cosine between each image and its reference image."""
    return (image_embeddings(clip, images) * image_embeddings(clip, references)).sum(-1).numpy()
