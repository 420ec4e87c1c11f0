"""Attribute accuracy: score what a toyworld prompt asks for against what the detector finds.

Why matching: a prompt may ask for several objects, and the generator may draw them in any order. Each
asked object is paired with a distinct detection so as to maximise agreements (exhaustively: at most
three objects), and an object with no detection fails every attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations

from ..captions import ObjectQuery, parse_caption
from ..detector import Detection, SceneDetection

ATTRIBUTES = ("color", "shape", "pattern", "size", "position")


def _asked(q: ObjectQuery) -> dict[str, str | None]:
    return {"color": q.color, "shape": q.shape, "pattern": q.pattern, "size": q.size, "position": q.position}


def _agreement(q: ObjectQuery, d: Detection) -> int:
    asked, got = _asked(q), d.attributes()
    return sum(asked[k] == got[k] for k in ATTRIBUTES if asked[k] is not None)


def match_objects(queries: list[ObjectQuery], detections: tuple[Detection, ...]) -> list[Detection | None]:
    """Pair each query with a distinct detection (or None), maximising the number of agreeing attributes."""
    slots = list(detections) + [None] * len(queries)
    best, best_score = [None] * len(queries), -1
    for perm in permutations(range(len(slots)), len(queries)):
        pick = [slots[i] for i in perm]
        score = sum(_agreement(q, d) for q, d in zip(queries, pick, strict=True) if d is not None)
        if score > best_score:
            best, best_score = pick, score
    return best


def prompt_attribute_scores(prompt: str, detection: SceneDetection) -> list[dict[str, bool]]:
    """Per asked object, {attribute: correct}; attributes the prompt leaves open are not scored."""
    queries, _ = parse_caption(prompt)
    matched = match_objects(queries, detection.objects)
    out = []
    for q, d in zip(queries, matched, strict=True):
        asked = _asked(q)
        got = d.attributes() if d is not None else {}
        out.append({k: got.get(k) == asked[k] for k in ATTRIBUTES if asked[k] is not None})
    return out


@dataclass
class AttributeTally:
    """Running counts of correct attributes, plus whether each image had the asked number of objects."""

    correct: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)

    def add(self, prompt: str, detection: SceneDetection) -> list[dict[str, bool]]:
        scores = prompt_attribute_scores(prompt, detection)
        for obj in scores:
            for k, ok in obj.items():
                self.total[k] = self.total.get(k, 0) + 1
                self.correct[k] = self.correct.get(k, 0) + int(ok)
        self.total["count"] = self.total.get("count", 0) + 1
        self.correct["count"] = self.correct.get("count", 0) + int(len(detection.objects) == len(scores))
        all_ok = all(all(o.values()) for o in scores)
        self.total["all"] = self.total.get("all", 0) + 1
        self.correct["all"] = self.correct.get("all", 0) + int(all_ok)
        return scores

    def accuracy(self) -> dict[str, float]:
        return {k: self.correct[k] / self.total[k] for k in self.total if self.total[k]}
