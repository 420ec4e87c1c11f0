"""IP-Adapter measured on toyworld: does an image prompt carry its object's look, and only its look?

Why these cases: the bundled adapter (`toyworld_ip_adapter()`) reads a reference image; what it should pass
on is the object's colour, pattern and shape, while the place comes from the text. The cases are generated
(seeded, the same for the adapter and its baseline): a reference object of a trained shape, colour and
pattern (striped, dotted or checkered: what a prompt that does not say it cannot give), drawn at one of
five places that keep any size in the frame, on a random background. The text is empty, or "an object
<place>" naming *another* place than the reference's. The baseline is the same text and seed without the
image prompt.

- image_prompt_transfer: the largest object generated, per attribute (colour, pattern, shape, all three),
  and, with a placed text, whether it sits where the text says (and how often at the reference's place).
- told_ceiling: the same cases with the look said in the text and no image prompt: what the model draws when
  told in words, the ceiling of what an image prompt of that look can give.
- regional_image_prompts: two references, each an image prompt masked to one half of the image, with the
  text "an object on the left and an object on the right": each half's object against its reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .appearance_cases import PATTERNED, SINGLE_POSITIONS
from .captions import object_phrase
from .detector import Detection, detect
from .transfer_eval import EVAL_GUIDANCE, EVAL_STEPS, AttributeRates
from .vocab import COLORS, IMAGE_SIZE, TRAIN_SHAPES
from .world import SceneSpec, make_object, render, sample_background

IMAGE_PROMPT_SEED = 2204
TWO_PROMPTS_SEED = 2205
TWO_PROMPTS_TEXT = "an object on the left and an object on the right"
SINGLE_ATTRIBUTES = ("colour", "pattern", "shape", "colour+pattern+shape")


@dataclass(frozen=True)
class ImagePromptCase:
    reference: SceneSpec  # one object
    place: str | None  # the place the text names (never the reference's), or None for the empty text

    @property
    def text(self) -> str:
        return "" if self.place is None else f"an object {self.place}"


def _reference(rng: np.random.Generator, color: str | None = None) -> SceneSpec:
    color = str(rng.choice(list(COLORS))) if color is None else color
    obj = make_object(str(rng.choice(TRAIN_SHAPES)), color, str(rng.choice(PATTERNED)),
                      str(rng.choice(("small", "", "large"))), str(rng.choice(SINGLE_POSITIONS)), rng)
    return SceneSpec((obj,), sample_background(rng))


def image_prompt_cases(n: int, placed: bool, seed: int = IMAGE_PROMPT_SEED) -> list[ImagePromptCase]:
    """`n` cases; with `placed`, each text names a place other than the reference's. One stream: the first k
    of `image_prompt_cases(n, p)` are `image_prompt_cases(k, p)`."""
    rng = np.random.default_rng(seed + int(placed))
    out = []
    for _ in range(n):
        reference = _reference(rng)
        place = str(rng.choice([p for p in SINGLE_POSITIONS if p != reference.objects[0].position]))
        out.append(ImagePromptCase(reference, place if placed else None))
    return out


def two_prompt_cases(n: int, seed: int = TWO_PROMPTS_SEED) -> list[tuple[SceneSpec, SceneSpec]]:
    """`n` (left reference, right reference) pairs of distinct colours, each drawn anywhere in its own image."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        left, right = (str(c) for c in rng.choice(list(COLORS), size=2, replace=False))
        out.append((_reference(rng, left), _reference(rng, right)))
    return out


def half_mask(side: str, size: int = IMAGE_SIZE) -> torch.Tensor:
    """[size, size] float: 1 on the left or right half."""
    mask = torch.zeros(size, size)
    if side == "left":
        mask[:, : size // 2] = 1
    else:
        mask[:, size // 2 :] = 1
    return mask


def _matches(d: Detection | None, ref: SceneSpec) -> dict[str, bool]:
    want = ref.objects[0]
    hits = {"colour": d is not None and d.color == want.color,
            "pattern": d is not None and d.pattern == want.pattern,
            "shape": d is not None and d.shape == want.shape}
    return {**hits, "colour+pattern+shape": all(hits.values())}


def _generate(backbone, text: str, seed: int, image_prompts: list) -> Image.Image:
    from pipelines.text_to_image import generate

    out = generate(backbone, text, num_inference_steps=EVAL_STEPS, guidance_scale=EVAL_GUIDANCE, width=IMAGE_SIZE,
                   height=IMAGE_SIZE, generator=[torch.Generator().manual_seed(seed)], image_prompts=image_prompts)
    return out.images[0]


def single_outcome(image: Image.Image, case: ImagePromptCase) -> dict[str, bool]:
    found = detect(image).objects
    d = found[0] if found else None  # the largest object
    row = _matches(d, case.reference)
    if case.place is not None:
        row["at the text's place"] = d is not None and d.position == case.place
        row["at the reference's place"] = d is not None and d.position == case.reference.objects[0].position
    return row


def image_prompt_transfer(backbone, adapter, cases: int, placed: bool, scale: float,
                          baseline_cases: int | None = None) -> AttributeRates:
    """Case i generates from seed i with the reference as an image prompt at `scale`; the baseline without it."""
    from pipelines.ip_adapter import ImagePrompt

    base_n = cases if baseline_cases is None else baseline_cases
    method, baseline = [], []
    for i, case in enumerate(image_prompt_cases(cases, placed)):
        prompt = ImagePrompt(Image.fromarray(render(case.reference).image), adapter, scale)
        method.append(single_outcome(_generate(backbone, case.text, i, [prompt]), case))
        if i < base_n:
            baseline.append(single_outcome(_generate(backbone, case.text, i, []), case))
    return AttributeRates.from_hits(method, baseline)


def told_text(case: ImagePromptCase) -> str:
    """The case's text with the reference's look (and size) said in words: "a large red striped star [on the left]"."""
    phrase = object_phrase(case.reference.objects[0], with_position=False)
    return phrase if case.place is None else f"{phrase} {case.place}"


def told_ceiling(backbone, cases: int, placed: bool) -> AttributeRates:
    """The same cases and seeds with no image prompt and the look said in the text: how often the model draws
    the look when it is told it in words, the most an adapter that carries the look could hope for."""
    return AttributeRates.from_hits(
        [single_outcome(_generate(backbone, told_text(case), i, []), case)
         for i, case in enumerate(image_prompt_cases(cases, placed))], [])


def two_outcome(image: Image.Image, left: SceneSpec, right: SceneSpec) -> dict[str, bool]:
    found = detect(image).objects
    halves = {side: next((d for d in found if (d.center[0] < IMAGE_SIZE / 2) == (side == "left")), None)
              for side in ("left", "right")}  # the largest object whose centre is in each half
    rows = {side: _matches(halves[side], ref) for side, ref in (("left", left), ("right", right))}
    out = {f"{side} colour": rows[side]["colour"] for side in rows}
    for attribute in ("colour", "colour+pattern+shape"):
        out[f"both {attribute}"] = rows["left"][attribute] and rows["right"][attribute]
    return out


def regional_image_prompts(backbone, adapter, cases: int, scale: float,
                           baseline_cases: int | None = None) -> AttributeRates:
    """Two masked image prompts per case (left and right halves); the baseline is the text alone."""
    from pipelines.ip_adapter import ImagePrompt

    base_n = cases if baseline_cases is None else baseline_cases
    method, baseline = [], []
    for i, (left, right) in enumerate(two_prompt_cases(cases)):
        prompts = [ImagePrompt(Image.fromarray(render(ref).image), adapter, scale, half_mask(side))
                   for ref, side in ((left, "left"), (right, "right"))]
        method.append(two_outcome(_generate(backbone, TWO_PROMPTS_TEXT, i, prompts), left, right))
        if i < base_n:
            baseline.append(two_outcome(_generate(backbone, TWO_PROMPTS_TEXT, i, []), left, right))
    return AttributeRates.from_hits(method, baseline)
