"""A folder of concept images, read and checked one file at a time.

Why one by one: a tuning set is a handful of photos from a phone or the web; one broken or tiny file should
be named and skipped, not stop the run. The run goes on when at least one image is usable and fails with
every reason on one line when none is. Masks (`NAME_mask.png`, white = the concept) and captions
(`NAME.txt`, where `{token}` and `{cls}` are filled in) are optional, per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from studio.errors import ImageError, InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MASK_SUFFIX = "_mask"
MAX_CAPTION_BYTES = 4096


@dataclass(frozen=True)
class ConceptImage:
    path: Path
    image: Image.Image
    mask: Image.Image | None
    caption: str | None  # the file's caption template, if it has a NAME.txt


@dataclass(frozen=True)
class ConceptFolder:
    images: tuple[ConceptImage, ...]
    refused: tuple[tuple[Path, str], ...]  # (file, why) for every file that was not used

    def notes(self) -> list[str]:
        return [f"skipped {path.name}: {why}" for path, why in self.refused]


def read_concept_folder(folder: Path, *, min_side: int) -> ConceptFolder:
    """Every usable image in `folder` (sorted by name), and why each other file was refused.

    `min_side`: the smallest short side accepted (the training size over the largest upscale).
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of concept images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    candidates = [p for p in files if p.suffix.lower() not in (".txt",) and not _is_mask(p)]
    if not candidates:
        raise InputError(f"{folder}: the folder has no images (give 3-20 PNG, JPEG or WebP files of the concept)")
    usable, refused = [], []
    for path in candidates:
        try:
            usable.append(_read_one(path, min_side))
        except InputError as exc:  # an unreadable, unsupported, tiny image or a bad mask
            refused.append((path, _reason(str(exc), path)))
    if not usable:
        reasons = "; ".join(f"{p.name}: {why}" for p, why in refused)
        raise InputError(f"{folder}: no usable concept image ({reasons})")
    return ConceptFolder(tuple(usable), tuple(refused))


def _is_mask(path: Path) -> bool:
    return path.stem.endswith(MASK_SUFFIX) and path.suffix.lower() in IMAGE_SUFFIXES


def _reason(message: str, path: Path) -> str:
    """The error's text without the path it starts with (the note names the file already)."""
    for prefix in (f"{path}: ", f"{path.name}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _read_one(path: Path, min_side: int) -> ConceptImage:
    from studio.images import open_image
    from studio.masks import load_mask

    image = open_image(path)
    if min(image.size) < min_side:
        raise ImageError(
            f"{image.width}x{image.height} is too small: the short side must be at least {min_side} px for this model"
        )
    mask = None
    for suffix in IMAGE_SUFFIXES:
        mask_path = path.with_name(f"{path.stem}{MASK_SUFFIX}{suffix}")
        if mask_path.is_file():
            loaded = load_mask(str(mask_path), expected_size=image.size, name=f"mask of {path.name}")
            mask = Image.fromarray((loaded.numpy() * 255).round().astype("uint8"), mode="L")
            break
    caption = None
    text_path = path.with_suffix(".txt")
    if text_path.is_file():
        raw = text_path.read_bytes()[:MAX_CAPTION_BYTES]
        caption = raw.decode("utf-8", errors="replace").strip() or None
    return ConceptImage(path, image, mask, caption)
