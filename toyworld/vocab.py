"""The toyworld's closed vocabulary: every attribute value a scene can take, and the words captions use.

Why one module: the renderer, the caption grammar, the tokenizer builder and the detector must agree on
the same names. Held-out concepts (shapes and patterns the model never sees in training) are listed
separately so that the training sampler can exclude them by construction.
All tables are immutable (tuples and `MappingProxyType`), so nothing here is mutable module state.
"""

from __future__ import annotations

from types import MappingProxyType

IMAGE_SIZE = 64

# Saturated object colours (RGB). Backgrounds are achromatic, so saturation separates objects from them.
COLORS: MappingProxyType[str, tuple[int, int, int]] = MappingProxyType(
    {
        "red": (220, 30, 30),
        "orange": (245, 130, 20),
        "yellow": (235, 215, 25),
        "green": (40, 170, 50),
        "cyan": (30, 200, 220),
        "blue": (35, 65, 225),
        "purple": (140, 45, 205),
        "pink": (240, 90, 180),
    }
)

# Pattern second tone = primary colour times this factor: same chromaticity, so colour stays measurable.
SHADE_FACTOR = 0.42

TRAIN_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross")
HELD_OUT_SHAPES: tuple[str, ...] = ("crescent", "hexagon")
ALL_SHAPES: tuple[str, ...] = TRAIN_SHAPES + HELD_OUT_SHAPES

TRAIN_PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered")
HELD_OUT_PATTERNS: tuple[str, ...] = ("twotone",)
ALL_PATTERNS: tuple[str, ...] = TRAIN_PATTERNS + HELD_OUT_PATTERNS

# Object half-size in pixels for each size word ("" = the unnamed, medium size).
SIZES: MappingProxyType[str, float] = MappingProxyType({"small": 6.5, "": 9.5, "large": 12.5})

# 3x3 grid of anchor points; the phrase is what a caption says.
GRID = (16, 32, 48)
POSITIONS: MappingProxyType[str, tuple[int, int]] = MappingProxyType(
    {
        "in the center": (1, 1),
        "on the left": (0, 1),
        "on the right": (2, 1),
        "at the top": (1, 0),
        "at the bottom": (1, 2),
        "at the top left": (0, 0),
        "at the top right": (2, 0),
        "at the bottom left": (0, 2),
        "at the bottom right": (2, 2),
    }
)
POSITION_JITTER = 2

BACKGROUND_COLORS: MappingProxyType[str, tuple[int, int, int]] = MappingProxyType(
    {
        "gray": (128, 128, 128),
        "white": (236, 236, 236),
        "black": (24, 24, 24),
        "beige": (222, 212, 190),
    }
)
BACKGROUND_KINDS: tuple[str, ...] = ("plain", "gradient", "noise")

# Every word the grammar can emit; the compact tokenizer makes each a single token.
GRAMMAR_WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        ["a", "an", "and", "small", "large", "background", "gradient", "to", "noisy", "with", "object"]
        + ["in", "the", "on", "at", "center", "left", "right", "top", "bottom"]
        + list(COLORS)
        + list(ALL_SHAPES)
        + list(ALL_PATTERNS)
        + list(BACKGROUND_COLORS)
    )
)
