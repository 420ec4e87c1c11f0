"""The oracle renderer: draw exactly what a toyworld prompt asks for, with the world's own renderer.

Why: it is the perfect generator, so tests of the quality evaluation, the demo and the metrics can
check their plumbing (every asked attribute found, 100%) without the trained model, and methods' tests
can build exact reference scenes from prompts.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .captions import parse_caption
from .vocab import BACKGROUND_COLORS, POSITIONS
from .world import Background, SceneSpec, make_object, render


def scene_from_prompt(prompt: str, seed: int) -> SceneSpec:
    """A scene satisfying the prompt; unsaid positions and background are drawn from `seed`."""
    rng = np.random.default_rng(seed)
    queries, bg_phrase = parse_caption(prompt)
    used = {q.position for q in queries if q.position}
    free = [p for p in POSITIONS if p not in used]
    objects = []
    for q in queries:
        position = q.position or free.pop(int(rng.integers(len(free))))
        size = "" if q.size == "medium" else q.size
        objects.append(make_object(q.shape, q.color, q.pattern, size, position, rng))
    background = Background("plain", "gray")
    if bg_phrase:
        words = bg_phrase.split()
        colours = [w for w in words if w in BACKGROUND_COLORS]
        if "gradient" in words and len(colours) == 2:
            background = Background("gradient", colours[0], colours[1])
        elif "noisy" in words and colours:
            background = Background("noise", colours[0], None, seed)
        elif colours:
            background = Background("plain", colours[0])
    return SceneSpec(tuple(objects), background)


def render_prompt(prompt: str, seed: int) -> Image.Image:
    """`render(prompt, seed)` for the quality evaluation, drawn by the world itself."""
    return Image.fromarray(render(scene_from_prompt(prompt, seed)).image)
