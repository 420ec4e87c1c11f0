"""The quality evaluation and demo plumbing, checked against the oracle renderer (the world itself)."""

from __future__ import annotations

from toyworld.captions import parse_caption
from toyworld.demo import DEMO_PROMPTS, run_demo
from toyworld.oracle import render_prompt
from toyworld.quality import evaluate, format_table, prompt_set


def test_prompt_sets_are_deterministic_and_parseable():
    a, b = prompt_set(20, 1, seed=0), prompt_set(20, 1, seed=0)
    assert a == b and len(set(a)) > 15
    for p in a + prompt_set(10, 2, seed=1):
        queries, bg = parse_caption(p)
        assert all(q.position for q in queries) and bg


def test_oracle_render_scores_perfectly():
    """The world drawing its own prompt is the perfect generator: every attribute must be found."""
    prompts = prompt_set(24, 1, seed=3) + prompt_set(12, 2, seed=4)
    report = evaluate(render_prompt, prompts, range(len(prompts)), name="oracle")
    acc = report.accuracy()
    assert min(acc[k] for k in ("color", "shape", "pattern", "position", "size", "count")) >= 0.97
    assert "oracle" in format_table([report])


def test_wrong_renderer_scores_badly():
    report = evaluate(lambda p, s: render_prompt("a cyan ring at the bottom left", s),
                      prompt_set(12, 1, seed=5), range(12))
    assert report.accuracy()["all"] <= 0.1


def test_demo_writes_images_and_reports_accuracy(tmp_path):
    summary = run_demo(tmp_path, render_prompt)
    assert len(summary.paths) == len(DEMO_PROMPTS) and all(p.is_file() for p in summary.paths)
    assert summary.grid_path.is_file()
    assert summary.accuracy["color"] >= 0.95 and summary.accuracy["position"] >= 0.95
