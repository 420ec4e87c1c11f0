"""Generated evaluation cases for the tuning-free appearance methods, built from trained attributes only.

Why: the held-out concepts (toyworld/concepts.py) test tuning methods, which can learn what the model never
drew. A tuning-free method copies an appearance that its reference image holds, so it is measured on
appearances the model can draw but the prompt does not say: a reference object whose colour and pattern
(striped, dotted or checkered: an unsaid pattern means plain in the caption grammar) are drawn at random
from the trained vocabulary. Every case comes from one seeded generator, not a hand-picked list, and the
method and its baseline see the same cases.

- transfer_cases: VisCtrl. A reference scene and a target scene whose object has another colour and another
  pattern; shapes, sizes, positions and backgrounds are drawn independently for both.
- composition_cases: FreeCustom. Two references (one object each, distinct colours) and a prompt that says
  each object's colour, shape and place but not its pattern.
- view_cases: Feature Gradual Sampling. One reference and one target object rendered at several positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .captions import caption
from .vocab import COLORS, TRAIN_PATTERNS, TRAIN_SHAPES
from .world import Background, SceneSpec, make_object, sample_background

PATTERNED = tuple(p for p in TRAIN_PATTERNS if p != "plain")  # what a prompt leaving the pattern unsaid cannot give
SIZE_WORDS = ("small", "", "large")
# Places that keep a large object inside the 64 px frame with a gap between two objects.
SINGLE_POSITIONS = ("in the center", "on the left", "on the right", "at the top", "at the bottom")
PAIR_POSITIONS = (("on the left", "on the right"), ("at the top", "at the bottom"),
                  ("at the top left", "at the bottom right"), ("at the bottom left", "at the top right"))

TRANSFER_SEED = 2201
COMPOSITION_SEED = 2202
VIEWS_SEED = 2203


@dataclass(frozen=True)
class TransferCase:
    """VisCtrl: give the target object (target.objects[0]) the reference object's colour and pattern."""

    reference: SceneSpec
    target: SceneSpec

    @property
    def wanted(self) -> tuple[str, str]:
        """(colour, pattern) the edited target object should show."""
        ref = self.reference.objects[0]
        return ref.color, ref.pattern


@dataclass(frozen=True)
class CompositionCase:
    """FreeCustom: each reference holds one object; the prompt names their colours, shapes and places."""

    references: tuple[SceneSpec, SceneSpec]
    positions: tuple[str, str]
    prompt: str
    told_prompt: str  # the same prompt saying each pattern too: what the model draws when it is told

    def captions(self) -> tuple[str, str]:
        """Each reference image's own caption (it says the pattern: that is what the reference shows)."""
        return caption(self.references[0]), caption(self.references[1])


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _object(rng: np.random.Generator, color: str, pattern: str, positions=SINGLE_POSITIONS, size=None):
    shape = str(rng.choice(TRAIN_SHAPES))
    size = str(rng.choice(SIZE_WORDS)) if size is None else size
    return make_object(shape, color, pattern, size, str(rng.choice(positions)), rng)


def transfer_cases(n: int, seed: int = TRANSFER_SEED) -> list[TransferCase]:
    """`n` cases; the first k of `transfer_cases(n)` are `transfer_cases(k)` (one stream, drawn in order)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        color, pattern = str(rng.choice(list(COLORS))), str(rng.choice(PATTERNED))
        reference = SceneSpec((_object(rng, color, pattern),), sample_background(rng))
        other_color = str(rng.choice([c for c in COLORS if c != color]))
        other_pattern = str(rng.choice([p for p in TRAIN_PATTERNS if p != pattern]))
        target = SceneSpec((_object(rng, other_color, other_pattern),), sample_background(rng))
        out.append(TransferCase(reference, target))
    return out


def composition_cases(n: int, seed: int = COMPOSITION_SEED) -> list[CompositionCase]:
    """`n` cases of two references each; the prompt leaves both patterns unsaid."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        colors = [str(c) for c in rng.choice(list(COLORS), size=2, replace=False)]
        shapes = [str(s) for s in rng.choice(TRAIN_SHAPES, size=2, replace=False)]
        patterns = [str(rng.choice(PATTERNED)) for _ in range(2)]
        positions = PAIR_POSITIONS[int(rng.integers(len(PAIR_POSITIONS)))]
        refs = tuple(
            SceneSpec((make_object(shapes[i], colors[i], patterns[i], "", str(rng.choice(SINGLE_POSITIONS)), rng),),
                      Background("plain", str(rng.choice(["gray", "white", "beige"]))))
            for i in range(2)
        )
        phrases = [f"{_article(colors[i])} {colors[i]} {shapes[i]} {positions[i]}" for i in range(2)]
        told = [f"{_article(colors[i])} {colors[i]} {patterns[i]} {shapes[i]} {positions[i]}" for i in range(2)]
        out.append(CompositionCase(refs, positions, f"{phrases[0]} and {phrases[1]}", f"{told[0]} and {told[1]}"))
    return out


def view_cases(n: int, views: int = 3, seed: int = VIEWS_SEED) -> list[tuple[SceneSpec, list[SceneSpec]]]:
    """`n` (reference, views) cases: one target object (another colour and pattern) at `views` positions."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        color, pattern = str(rng.choice(list(COLORS))), str(rng.choice(PATTERNED))
        reference = SceneSpec((_object(rng, color, pattern),), sample_background(rng))
        other_color = str(rng.choice([c for c in COLORS if c != color]))
        other_pattern = str(rng.choice([p for p in TRAIN_PATTERNS if p != pattern]))
        shape, size = str(rng.choice(TRAIN_SHAPES)), str(rng.choice(("", "large")))
        background = sample_background(rng)
        places = [str(p) for p in rng.choice(SINGLE_POSITIONS, size=views, replace=False)]
        scenes = [SceneSpec((make_object(shape, other_color, other_pattern, size, p, rng),), background)
                  for p in places]
        out.append((reference, scenes))
    return out
