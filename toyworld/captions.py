"""The caption grammar, and its inverse.

Why a grammar: captions must be varied enough to train a text encoder, yet every caption must be
parseable back into the attributes it asks for, so that a prompt can be scored against a detection.

    caption  := object ("," object)* ("and" object)? ("," background)?
    object   := ("a" | "an") [size] colour [pattern] shape [position]
    background := colour "background" | "a" colour "to" colour "gradient background" | "noisy" colour "background"

A missing size means medium, a missing pattern means plain, a missing position means "anywhere".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vocab import ALL_PATTERNS, ALL_SHAPES, BACKGROUND_COLORS, COLORS, POSITIONS
from .world import Background, ObjectSpec, SceneSpec


@dataclass(frozen=True)
class ObjectQuery:
    """What a prompt asks of one object; None means the prompt does not say."""

    shape: str
    color: str
    pattern: str = "plain"
    size: str = "medium"
    position: str | None = None


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_phrase(obj: ObjectSpec, with_position: bool = True, say_plain: bool = False) -> str:
    words = [obj.size] if obj.size else []
    words.append(obj.color)
    if obj.pattern != "plain" or say_plain:
        words.append(obj.pattern)
    words.append(obj.shape)
    phrase = f"{_article(words[0])} {' '.join(words)}"
    return f"{phrase} {obj.position}" if with_position else phrase


def background_phrase(bg: Background) -> str:
    if bg.kind == "gradient":
        return f"a {bg.color} to {bg.color2} gradient background"
    if bg.kind == "noise":
        return f"noisy {bg.color} background"
    return f"{bg.color} background"


def join_objects(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(scene: SceneSpec, rng: np.random.Generator | None = None) -> str:
    """Canonical caption without rng (every position and the background said); varied with rng."""
    if rng is None:
        phrases = [object_phrase(o) for o in scene.objects]
        return join_objects(phrases) + ", " + background_phrase(scene.background)
    phrases = [object_phrase(o, with_position=rng.random() < 0.85, say_plain=rng.random() < 0.3)
               for o in scene.objects]
    text = join_objects(phrases)
    if rng.random() < 0.75:
        text += ", " + background_phrase(scene.background)
    return text


def _parse_object(phrase: str) -> ObjectQuery:
    words = phrase.split()
    if words and words[0] in ("a", "an"):
        words = words[1:]
    position = None
    for pos in sorted(POSITIONS, key=len, reverse=True):
        tail = pos.split()
        if words[-len(tail):] == tail:
            position, words = pos, words[: -len(tail)]
            break
    size = "medium"
    if words and words[0] in ("small", "large"):
        size, words = words[0], words[1:]
    if len(words) < 2 or words[0] not in COLORS or words[-1] not in ALL_SHAPES:
        raise ValueError(f"not a toyworld object phrase: {phrase!r}")
    pattern = words[1] if len(words) == 3 and words[1] in ALL_PATTERNS else "plain"
    return ObjectQuery(words[-1], words[0], pattern, size, position)


def parse_caption(text: str) -> tuple[list[ObjectQuery], str | None]:
    """Invert the grammar: the objects a caption asks for, and its background phrase if any."""
    parts = [p.strip() for p in text.strip().lower().split(",")]
    background = None
    if parts[-1].endswith("background"):
        background = parts.pop()
    phrases: list[str] = []
    for part in parts:
        phrases.extend(p.strip() for p in part.split(" and ") if p.strip())
    return [_parse_object(p) for p in phrases], background


def background_color_words() -> tuple[str, ...]:
    return tuple(BACKGROUND_COLORS)
