"""The toyworld's appearance-pair stage: what the pairs say, the joint attention it trains with, the runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention

from toyworld import toyworld_path
from toyworld.train.pairs import (
    JointLayout,
    PairedSelfAttention,
    before_edit,
    build_pair_set,
    epsilon_towards,
    masks_on_grid,
    sample_pair,
    target_caption,
)
from toyworld.train.pairs import (
    main as pairs_main,
)
from toyworld.vocab import TRAIN_PATTERNS, TRAIN_SHAPES


def test_target_copies_one_source_objects_appearance_elsewhere_and_its_caption_leaves_the_pattern_unsaid():
    rng = np.random.default_rng(0)
    said_object = 0
    for _ in range(200):
        pair = sample_pair(rng)
        model, copied = pair.source.objects[pair.model_index], pair.target.objects[0]
        assert (copied.color, copied.pattern) == (model.color, model.pattern)
        assert copied.position != model.position
        assert copied.shape in TRAIN_SHAPES and copied.pattern in TRAIN_PATTERNS
        text = target_caption(pair, rng)
        first = text.split(" and ")[0].split(",")[0]
        assert model.color in first and not any(p in first for p in TRAIN_PATTERNS if p != "plain")
        said_object += " object" in first
        if pair.same_background:
            assert pair.target.background == pair.source.background and "background" not in text
    assert 20 < said_object < 100  # "object" for a copied shape some of the time


def _einsum_attention(q, k, v, bias):
    logits = torch.einsum("phnd,phmd->phnm", q, k) / q.shape[-1] ** 0.5 + bias  # (P, H, N, M)
    return torch.einsum("phnm,phmd->phnd", logits.softmax(-1), v)


@pytest.mark.parametrize("replace_form", [True, False])
def test_joint_attention_equals_the_einsum_of_its_key_layout(replace_form):
    torch.manual_seed(0)
    pairs, side, channels = 3, 4, 8
    attn = Attention(channels, heads=2, dim_head=4)
    masks = torch.zeros(pairs, 16, 16, dtype=torch.bool)
    masks[:, 4:12, 0:8] = True
    masks[1] = False  # an empty mask: its concatenated keys all drop out, own keys remain
    layout = JointLayout(torch.full((pairs,), replace_form), torch.tensor([True, False, True]),
                         torch.tensor([0.0, 1.5, 3.0]), masks)
    x = torch.randn(2 * pairs, side * side, channels)  # (2P, N, C)
    out = PairedSelfAttention(lambda: layout)(attn, x)

    def heads(t):
        return t.view(2 * pairs, side * side, 2, 4).transpose(1, 2)

    q, k, v = heads(attn.to_q(x)), heads(attn.to_k(x)), heads(attn.to_v(x))
    inside = masks_on_grid(masks, side * side)  # (P, N)
    expected = []
    for i in range(pairs):
        other = (i - 1) % pairs  # roll(1): pair i's distractor is pair i-1's source
        if replace_form:
            keys, values, bias = k[i], v[i], torch.zeros(side * side)
        else:
            keys = torch.cat([k[pairs + i], k[i], k[other]], dim=1)
            values = torch.cat([v[pairs + i], v[i], v[other]], dim=1)
            w = layout.weight[i]
            src_bias = torch.where(inside[i], w, torch.tensor(float("-inf")))
            other_bias = torch.where(inside[other] & layout.distractor[i], w, torch.tensor(float("-inf")))
            bias = torch.cat([torch.zeros(side * side), src_bias, other_bias])
        expected.append(_einsum_attention(q[pairs + i : pairs + i + 1], keys[None], values[None], bias))
    sources = _einsum_attention(q[:pairs], k[:pairs], v[:pairs], torch.zeros(side * side))
    full = torch.cat([sources, *expected]).transpose(1, 2).reshape(2 * pairs, side * side, channels)
    torch.testing.assert_close(out, attn.to_out[0](full), atol=1e-5, rtol=1e-5)


def test_pair_set_masks_mark_the_copied_objects():
    pairs = build_pair_set(4, 0)
    assert pairs.images.shape == (4, 3, 64, 64, 3)
    for i, pair in enumerate(pairs.pairs):
        model = pair.source.objects[pair.model_index]
        assert pairs.model_masks[i].sum() > 20 and pairs.copied_masks[i].sum() > 20
        cx, cy = model.center
        ys, xs = np.nonzero(pairs.model_masks[i])
        assert abs(xs.mean() - cx) < 3 and abs(ys.mean() - cy) < 3


@pytest.mark.slow
def test_the_stage_fine_tunes_a_copy_of_the_base_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "paired"
    pairs_main(["--base", str(toyworld_path()), "--out", str(out), "--pairs", "8", "--steps", "2", "--batch", "2",
                "--threads", "1", "--device", "cpu"])
    report = json.loads((out / "training_report.json").read_text())
    assert report["pairs"]["status"] == "done" and report["pairs"]["steps"] == 2
    assert "unet" in report  # the base model's own report is kept beside the stage's
    from toyworld import load_toyworld_pipeline

    tuned = load_toyworld_pipeline(str(out)).unet.state_dict()
    base = load_toyworld_pipeline().unet.state_dict()
    assert any(not torch.equal(tuned[k], base[k]) for k in base)
    again = tmp_path / "paired_again"  # a continuation on the stage's own output keeps the first run's record
    pairs_main(["--base", str(out), "--out", str(again), "--pairs", "8", "--steps", "1", "--batch", "2",
                "--threads", "1", "--device", "cpu", "--edit", "1.0"])
    continued = json.loads((again / "training_report.json").read_text())
    assert continued["pairs"]["args"]["edit"] == 1.0 and continued["pairs"]["steps"] == 1
    assert continued["pairs_earlier"][-1]["steps"] == 2
    first_log = (out / "training_log_pairs.txt").read_text()
    log = (again / "training_log_pairs.txt").read_text()
    assert log.startswith(first_log)
    for line in ("appearance-pair stage on", "done in"):  # one more run: its header and its end
        assert log.count(line) == first_log.count(line) + 1, line
    with pytest.raises(SystemExit, match="already holds a model"):
        pairs_main(["--base", str(toyworld_path()), "--out", str(out)])
    other = tmp_path / "someone_elses"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="other files in it"):
        pairs_main(["--base", str(toyworld_path()), "--out", str(other)])
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(SystemExit, match="must differ"):
        pairs_main(["--base", str(out), "--out", str(out), "--overwrite"])


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--edit", "1.5", "edit must be a share"),
    ("--target-dropout", "-0.1", "target_dropout must be a share"),
    ("--edit-min-t", "1000", "edit_min_t must be a timestep"),
])
def test_a_pair_mix_outside_its_range_is_refused_before_anything_is_written(tmp_path, flag, value, message):
    out = tmp_path / "paired"
    with pytest.raises(SystemExit, match=message):
        pairs_main(["--base", str(toyworld_path()), "--out", str(out), flag, value])
    assert not out.exists()


def test_edit_target_denoises_the_before_latent_to_the_targets_own_x0():
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    gen = torch.Generator().manual_seed(0)
    before, x0, noise = (torch.randn(3, 4, 8, 8, generator=gen) for _ in range(3))
    t = torch.tensor([500, 750, 999])
    acp = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    zt = sched.add_noise(before, noise, t)
    eps = epsilon_towards(noise, before, x0, acp.squeeze() / (1 - acp.squeeze()))
    torch.testing.assert_close((zt - (1 - acp).sqrt() * eps) / acp.sqrt(), x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(epsilon_towards(noise, x0, x0, torch.ones(3)), noise)


def test_before_edit_changes_only_the_copied_objects_colour_and_pattern():
    rng = np.random.default_rng(1)
    for _ in range(50):
        pair = sample_pair(rng)
        before = before_edit(pair.target, rng)
        (b, *b_rest), (a, *a_rest) = before.objects, pair.target.objects
        assert b.color != a.color
        assert (b.shape, b.position, b.center, b.size) == (a.shape, a.position, a.center, a.size)
        assert b_rest == a_rest and before.background == pair.target.background
