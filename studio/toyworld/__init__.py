"""Toyworld: the studio's bundled text-to-image model of a procedural world, its detector and trainer.

Why it exists: no real weights can be downloaded where the studio is built and tested, and random
weights cannot show that a method works. Toyworld scenes are procedural, so what a method claims
(colour, shape, pattern, position, transfer of a reference object) can be measured exactly.

Importing this package does no work; submodules load torch and diffusers only when used.
"""

from __future__ import annotations

from pathlib import Path


def toyworld_path() -> Path:
    """The bundled model folder (diffusers layout), `assets/toyworld` at the repository root."""
    return Path(__file__).resolve().parents[2] / "assets" / "toyworld"


def load_toyworld_pipeline(path: Path | None = None, **kwargs):
    """Load the bundled model as a `StableDiffusionPipeline`, offline; a clear error if files are bad."""
    from .loader import load_pipeline

    return load_pipeline(path or toyworld_path(), **kwargs)


__all__ = ["toyworld_path", "load_toyworld_pipeline"]
