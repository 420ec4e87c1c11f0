"""VisCtrl, FreeCustom and Feature Gradual Sampling measured on appearances only the reference image carries.

Why: a tuning-free method copies what its reference shows. The cases (toyworld/appearance_cases.py) draw the
reference's colour and pattern at random from what the model was trained to draw, and the prompt leaves the
pattern unsaid, so the baseline (the same run without the method) cannot reach it except by chance. Each
evaluator scores every case with the method and without it and returns per-attribute rates.

- visctrl_transfer: the target object takes the reference's colour and pattern, keeps its own shape (and,
  by the paste-back, every pixel outside its mask). Baseline: the same passes with the control never
  active (inversion and regeneration alone).
- freecustom_composition: both references' objects appear at the places the prompt names, with their
  colours and their unsaid patterns. Baseline: the prompt generated from the same seed without references.
- visctrl_ceiling: the target already drawn as asked, through the same passes without the control: what
  inversion and regeneration keep of a finished transfer (the round trip; the control supplies the
  appearance again every pass, so VisCtrl can exceed it).
- composition_told: the same cases generated with prompts that say each pattern, without references: what
  the model draws when told, a reference point for a method that only has to supply the pattern.
- fgs_views: several views of one object edited together; how often the views agree on the transferred
  colour and pattern, for a Feature Gradual Sampling weight alpha.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np
import torch
from PIL import Image

from .appearance_cases import TransferCase, composition_cases, transfer_cases, view_cases
from .detector import Detection, detect
from .world import render

VISCTRL_ATTRIBUTES = ("colour+pattern", "colour", "pattern", "shape kept", "outside identical")
FREECUSTOM_ATTRIBUTES = ("both colour+pattern", "both in place", "both colour", "both pattern", "both +shape")
EVAL_STEPS = 25  # FreeCustom's evaluation schedule: the toyworld evaluations' DDIM 25 steps at CFG 5
EVAL_GUIDANCE = 5.0


@dataclass(frozen=True)
class AttributeRates:
    """Per attribute: the share of cases that meet it with the method and without it (the baseline)."""

    method: dict[str, float]
    baseline: dict[str, float]
    cases: int
    baseline_cases: int
    method_rows: tuple[dict[str, bool], ...] = ()  # per case, in case order: for breakdowns

    @classmethod
    def from_hits(cls, method: list[dict[str, bool]], baseline: list[dict[str, bool]]) -> AttributeRates:
        def rates(rows: list[dict[str, bool]]) -> dict[str, float]:
            return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}

        return cls(rates(method), rates(baseline), len(method), len(baseline), tuple(method))

    def lines(self, name: str) -> list[str]:
        out = []
        for attribute, rate in self.method.items():
            base = self.baseline.get(attribute)
            base_text = "     -" if base is None else f"{base:6.1%}"
            out.append(f"{name:<16} {attribute:<20} method {rate:6.1%} ({self.cases:>2})   "
                       f"baseline {base_text} ({self.baseline_cases:>2})")
        return out


def _object_under(image: Image.Image | np.ndarray, mask: np.ndarray) -> Detection | None:
    """The largest detected object lying mostly inside `mask`, or None."""
    for d in detect(image).objects:
        if (d.mask & mask).sum() >= 0.5 * d.mask.sum():
            return d
    return None


def _mask_tensor(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(mask.astype(np.float32))


def visctrl_outcome(backbone, case: TransferCase, *, control: bool = True, **options) -> dict[str, bool]:
    """Run VisCtrl on one case (or, with control=False, the same passes with the control never active).

    On the whole image unless `crop=True` is given: the official crop magnifies toyworld's small objects to a
    scale the model never drew (see `pipelines.settings.VisCtrlRunSettings.crop`)."""
    from pipelines.visctrl import FIRST_PASS, LATER_PASS, visctrl

    options.setdefault("crop", False)

    if not control:
        options.setdefault("first_pass", replace(FIRST_PASS, start=1.0))
        options.setdefault("later_passes", replace(LATER_PASS, start=1.0))
    ref, tgt = render(case.reference), render(case.target)
    mask = tgt.objects[0].mask
    out = visctrl(backbone, Image.fromarray(ref.image), _mask_tensor(ref.objects[0].mask),
                  [(Image.fromarray(tgt.image), _mask_tensor(mask))], **options)
    image = np.asarray(out.images[0])  # (H, W, 3) uint8
    d = _object_under(image, mask)
    color, pattern = case.wanted
    return {
        "colour+pattern": d is not None and (d.color, d.pattern) == (color, pattern),
        "colour": d is not None and d.color == color,
        "pattern": d is not None and d.pattern == pattern,
        "shape kept": d is not None and d.shape == tgt.objects[0].spec.shape,
        "outside identical": bool(np.array_equal(image[~mask], tgt.image[~mask])),
    }


def visctrl_transfer(backbone, cases: int = 40, baseline_cases: int | None = None, **options) -> AttributeRates:
    """VisCtrl over the first `cases` generated transfer cases; the baseline over the first `baseline_cases`
    (default: all). `options` go to `pipelines.visctrl.visctrl` (passes, crop, first_pass, ...)."""
    drawn = transfer_cases(cases)
    method = [visctrl_outcome(backbone, c, **options) for c in drawn]
    base_n = cases if baseline_cases is None else baseline_cases
    baseline = [visctrl_outcome(backbone, c, control=False, **options) for c in drawn[:base_n]]
    return AttributeRates.from_hits(method, baseline)


def visctrl_ceiling(backbone, cases: int = 40, **options) -> AttributeRates:
    """The transfer cases with the target object already drawn in the reference's colour and pattern, run
    through the same passes with the control never active: how often inversion and regeneration alone keep
    (and the detector reads) the appearance VisCtrl is asked for. Not a bound on VisCtrl, whose control
    supplies the appearance again every pass, but a measure of what each pass loses.
    Returned as the `method` column; there is no baseline."""
    rows = []
    for case in transfer_cases(cases):
        obj = case.target.objects[0]
        color, pattern = case.wanted
        done = replace(case.target, objects=(replace(obj, color=color, pattern=pattern),))
        rows.append(visctrl_outcome(backbone, replace(case, target=done), control=False, **options))
    return AttributeRates.from_hits(rows, [])


def _composition_hits(image: Image.Image, wanted: Sequence[tuple[str, str, str, str]]) -> dict[str, bool]:
    """wanted: (position, colour, pattern, shape) per reference object; each is looked for at its place."""
    found = detect(image).objects
    per = []
    for position, color, pattern, shape in wanted:
        here = [d for d in found if d.position == position]
        per.append({
            "in place": bool(here),
            "colour": any(d.color == color for d in here),
            "pattern": any(d.pattern == pattern for d in here),
            "colour+pattern": any((d.color, d.pattern) == (color, pattern) for d in here),
            "+shape": any((d.color, d.pattern, d.shape) == (color, pattern, shape) for d in here),
        })
    return {f"both {k}": all(p[k] for p in per) for k in ("colour+pattern", "in place", "colour", "pattern", "+shape")}


def freecustom_composition(
    backbone,
    cases: int = 40,
    baseline_cases: int | None = None,
    steps: int = EVAL_STEPS,
    guidance: float = EVAL_GUIDANCE,
    **options,
) -> AttributeRates:
    """FreeCustom over the first `cases` generated compositions (case i uses seed i for the generation and
    the references' re-noising); the baseline generates the same prompt from the same seed without them.
    `options` go to `pipelines.customize.freecustom` (mask_weights, style_fidelity, ...)."""
    from pipelines.customize import Reference, freecustom
    from pipelines.text_to_image import generate

    kwargs = {"num_inference_steps": steps, "guidance_scale": guidance, "width": 64, "height": 64}
    base_n = cases if baseline_cases is None else baseline_cases
    method, baseline = [], []
    for i, case in enumerate(composition_cases(cases)):
        renders = [render(s) for s in case.references]
        refs = [Reference(Image.fromarray(r.image), _mask_tensor(r.objects[0].mask), text)
                for r, text in zip(renders, case.captions(), strict=True)]
        wanted = [(p, r.objects[0].spec.color, r.objects[0].spec.pattern, r.objects[0].spec.shape)
                  for p, r in zip(case.positions, renders, strict=True)]
        out = freecustom(backbone, case.prompt, refs, generator=[torch.Generator().manual_seed(i)], reference_seed=i,
                         **kwargs, **options)
        method.append(_composition_hits(out.images[0], wanted))
        if i < base_n:
            plain = generate(backbone, case.prompt, generator=[torch.Generator().manual_seed(i)], **kwargs)
            baseline.append(_composition_hits(plain.images[0], wanted))
    return AttributeRates.from_hits(method, baseline)


def composition_told(backbone, cases: int = 40, steps: int = EVAL_STEPS, guidance: float = EVAL_GUIDANCE):
    """The composition cases generated from prompts that also say each pattern (no references), scored as
    freecustom_composition scores them: how often the model draws both objects right when the prompt says all.
    Returned as the `method` column; there is no baseline."""
    from pipelines.text_to_image import generate

    kwargs = {"num_inference_steps": steps, "guidance_scale": guidance, "width": 64, "height": 64}
    told = []
    for i, case in enumerate(composition_cases(cases)):
        wanted = [(p, s.objects[0].color, s.objects[0].pattern, s.objects[0].shape)
                  for p, s in zip(case.positions, case.references, strict=True)]
        out = generate(backbone, case.told_prompt, generator=[torch.Generator().manual_seed(i)], **kwargs)
        told.append(_composition_hits(out.images[0], wanted))
    return AttributeRates.from_hits(told, [])


@dataclass(frozen=True)
class ViewAgreement:
    agree: float  # share of view pairs whose detected colour and pattern agree
    transferred: float  # share of views that show the reference's colour and pattern
    distance: float  # mean pairwise distance of the views' mean object RGB (0..1)
    objects: int
    views: int


def fgs_views(backbone, alpha: float, objects: int = 9, views: int = 3, **options) -> ViewAgreement:
    """Cross-view agreement of VisCtrl with Feature Gradual Sampling weight `alpha` over generated cases:
    each case is one reference and one target object rendered at `views` positions, edited in one batch
    (alpha = 0: each view attends to the reference alone). `options` go to `pipelines.visctrl.visctrl`."""
    from pipelines.visctrl import visctrl

    agree = pairs = transferred = 0
    distance = 0.0
    for reference_spec, scenes in view_cases(objects, views):
        ref = render(reference_spec)
        wanted = (ref.objects[0].spec.color, ref.objects[0].spec.pattern)
        rendered = [render(s) for s in scenes]
        masks = [r.objects[0].mask for r in rendered]
        targets = [(Image.fromarray(r.image), _mask_tensor(m)) for r, m in zip(rendered, masks, strict=True)]
        out = visctrl(backbone, Image.fromarray(ref.image), _mask_tensor(ref.objects[0].mask), targets, alpha=alpha,
                      **options)
        found = [_object_under(image, m) for image, m in zip(out.images, masks, strict=True)]
        seen = [None if d is None else (d.color, d.pattern) for d in found]
        means = [np.asarray(image, np.float32)[m].mean(0) / 255 for image, m in zip(out.images, masks, strict=True)]
        transferred += sum(s == wanted for s in seen)
        for a, b in combinations(range(views), 2):
            agree += seen[a] is not None and seen[a] == seen[b]
            distance += float(np.abs(means[a] - means[b]).mean())
            pairs += 1
    return ViewAgreement(agree / pairs, transferred / (objects * views), distance / pairs, objects, views)
