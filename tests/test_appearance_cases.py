"""The generated appearance cases: seeded, drawn from trained attributes, and fair to the baseline.

The oracle is the world's own vocabulary and caption grammar: a case is fair when the reference's pattern
is one the model was trained to draw, the target differs from it, and the prompt's parse leaves the
pattern at the grammar's default (plain), so only the reference can supply it.
"""

from __future__ import annotations

from toyworld.appearance_cases import PATTERNED, composition_cases, transfer_cases, view_cases
from toyworld.captions import parse_caption
from toyworld.vocab import COLORS, TRAIN_PATTERNS, TRAIN_SHAPES


def test_transfer_cases_are_seeded_prefixes_of_one_stream():
    assert transfer_cases(12) == transfer_cases(12)
    assert transfer_cases(12)[:5] == transfer_cases(5)
    assert transfer_cases(5, seed=1) != transfer_cases(5)


def test_transfer_cases_carry_a_trained_pattern_the_target_lacks_and_vary_the_scene():
    cases = transfer_cases(40)
    for case in cases:
        ref, tgt = case.reference.objects[0], case.target.objects[0]
        assert ref.pattern in PATTERNED and ref.shape in TRAIN_SHAPES and ref.color in COLORS
        assert tgt.pattern in TRAIN_PATTERNS and tgt.shape in TRAIN_SHAPES
        assert tgt.color != ref.color and tgt.pattern != ref.pattern
    targets = [c.target.objects[0] for c in cases]
    for attribute in ("shape", "size", "position", "pattern"):
        assert len({getattr(o, attribute) for o in targets}) >= 3, attribute
    assert len({c.target.background.kind for c in cases}) >= 2
    assert len({c.wanted for c in cases}) >= 10


def test_composition_prompts_say_colour_shape_and_place_but_leave_the_pattern_unsaid():
    cases = composition_cases(20)
    assert cases == composition_cases(20)
    for case in cases:
        queries, _ = parse_caption(case.prompt)
        assert len(queries) == 2
        for query, scene, position in zip(queries, case.references, case.positions, strict=True):
            obj = scene.objects[0]
            assert (query.color, query.shape, query.position) == (obj.color, obj.shape, position)
            assert query.pattern == "plain" and obj.pattern in PATTERNED  # unsaid: the grammar's default
        assert case.references[0].objects[0].color != case.references[1].objects[0].color


def test_view_cases_show_one_object_at_distinct_places():
    for reference, scenes in view_cases(9, views=3):
        objects = [s.objects[0] for s in scenes]
        assert len({(o.shape, o.color, o.pattern, o.size) for o in objects}) == 1
        assert len({o.position for o in objects}) == 3
        assert objects[0].color != reference.objects[0].color


def test_the_told_prompt_differs_only_by_saying_the_patterns():
    for case in composition_cases(10):
        told, _ = parse_caption(case.told_prompt)
        plain, _ = parse_caption(case.prompt)
        assert [q.pattern for q in told] == [s.objects[0].pattern for s in case.references]
        assert [(q.color, q.shape, q.position) for q in told] == [(q.color, q.shape, q.position) for q in plain]
