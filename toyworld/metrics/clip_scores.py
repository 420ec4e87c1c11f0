"""Toy CLIP-T (text-image) and CLIP-I (image-image) scores: cosine similarity of toy-CLIP embeddings.

Why toy-CLIP: it was trained contrastively on toyworld scenes and captions, so its embedding space
knows colours, shapes and positions. Images are preprocessed exactly as in training (64x64, CLIP
mean/std). Scores are plain cosines in [-1, 1]; comparisons only make sense under the same model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..detector import as_array

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_clip_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> CLIP-normalised float (B, 3, H, W), as CLIPImageProcessor does at 64x64."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def load_toy_clip(model_folder: str | os.PathLike[str]):
    """The full toy-CLIP (`CLIPModel`: both towers and projections) kept in the model folder's `clip/`."""
    from transformers import CLIPModel

    folder = Path(model_folder) / "clip"
    return CLIPModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True).eval()


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
