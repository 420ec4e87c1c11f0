"""kernels/: every backend against the einsum oracle, the oracle against a python loop, the API's errors.

CPU, fp32, no network. Backends that cannot run here (xformers always on CPU; triton when it is not
installed) are skipped with the reason ``available_backends()`` gives.

triton runs under ``TRITON_INTERPRET=1`` on tiny shapes. triton reads that variable when it is
*imported*, and torch imports triton on its own (FlexAttention, inductor), so the triton cases run in a
fresh process started by ``test_triton_backend_in_fresh_interpreter_process`` (or in-process when
pytest itself was started with ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import kernels
from kernels import BACKENDS, attention, available_backends, bias_form, select_backend
from kernels.bias import check_inputs
from kernels.per_key import drop_masked_keys, fold_is_free, fold_per_key_bias
from kernels.sdpa_backend import _sdpa_per_key
from kernels.xformers_backend import _aligned_bias, _is_aligned

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

NEG_INF = float("-inf")
TOL = 1e-5
HAS_TRITON = importlib.util.find_spec("triton") is not None
# The triton cases run in this process only when it started under the interpreter (see module doc).
TRITON_IN_PROCESS = HAS_TRITON and os.environ.get("TRITON_INTERPRET") == "1"
ROOT = Path(__file__).resolve().parents[1]

# (B, H, Lq, Lk, D): SD1.5 head dims 40/80, SDXL's 64, Lq != Lk (MRSA: target queries vs ref keys).
SHAPES = [(2, 2, 37, 53, 40), (2, 3, 24, 24, 80), (1, 2, 48, 17, 64)]


# --------------------------------------------------------------------------------------- inputs


def _qkv(shape: tuple[int, int, int, int, int], seed: int = 0) -> tuple[torch.Tensor, ...]:
    b, h, lq, lk, d = shape
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, n, d, generator=g) for n in (lq, lk, lk))  # [B, H, L, D] x3


def _per_key(b: int, h: int, lq: int, lk: int, g: torch.Generator) -> torch.Tensor:
    """FreeCustom-like: random weights, ~30 % masked keys, and in the last batch row a whole
    'reference block' (the second half of the keys) masked."""
    bias = torch.randn(b, lk, generator=g)  # [B, Lk]
    bias[torch.rand(b, lk, generator=g) < 0.3] = NEG_INF
    bias[:, 0] = 0.5  # every row keeps a key
    bias[-1, lk // 2 :] = NEG_INF
    return bias


def _full(b: int, h: int, lq: int, lk: int, g: torch.Generator) -> torch.Tensor:
    bias = torch.randn(b, h, lq, lk, generator=g)  # [B, H, Lq, Lk]
    bias[torch.rand(b, h, lq, lk, generator=g) < 0.2] = NEG_INF
    bias[..., 0] = 0.0  # every row keeps a key
    return bias


def _dead_per_key(b: int, h: int, lq: int, lk: int, g: torch.Generator) -> torch.Tensor:
    """Batch row 0 has every key masked: all its query rows are fully masked."""
    bias = _per_key(b, h, lq, lk, g)
    bias[0] = NEG_INF
    return bias


def _dead_full(b: int, h: int, lq: int, lk: int, g: torch.Generator) -> torch.Tensor:
    """Some query rows (every 5th, and all of head 0 in batch 0 row 1) have every key masked."""
    bias = _full(b, h, lq, lk, g)
    bias[:, :, ::5, :] = NEG_INF
    bias[0, 0, 1, :] = NEG_INF
    return bias


BIAS_CASES: dict[str, Callable[[int, int, int, int, torch.Generator], torch.Tensor | None]] = {
    "none": lambda b, h, lq, lk, g: None,
    "per_key": _per_key,
    "per_key_shared": lambda b, h, lq, lk, g: _per_key(1, h, lq, lk, g),  # [1, Lk]
    "per_key_4d": lambda b, h, lq, lk, g: _per_key(b, h, lq, lk, g)[:, None, None, :],  # [B, 1, 1, Lk]
    "full": _full,
    "full_head_broadcast": lambda b, h, lq, lk, g: _full(b, 1, lq, lk, g),  # [B, 1, Lq, Lk]
    "full_per_head_key": lambda b, h, lq, lk, g: _full(1, h, 1, lk, g),  # [1, H, 1, Lk]
    "full_per_query": lambda b, h, lq, lk, g: torch.randn(b, 1, lq, 1, generator=g),  # [B, 1, Lq, 1]
    "dead_per_key": _dead_per_key,
    "dead_full": _dead_full,
}


def _make(shape: tuple[int, int, int, int, int], case: str, seed: int = 0):
    q, k, v = _qkv(shape, seed)
    b, h, lq, lk, _ = shape
    bias = BIAS_CASES[case](b, h, lq, lk, torch.Generator().manual_seed(seed + 1))
    return q, k, v, bias


def _dead_mask(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """[B, H, Lq] True where every key of the row is -inf."""
    b, h, lq, _ = q.shape
    lk = k.shape[2]
    if bias is None:
        return torch.zeros(b, h, lq, dtype=torch.bool)
    b4 = bias[:, None, None, :] if bias.ndim == 2 else bias
    return (b4.expand(b, h, lq, lk) == NEG_INF).all(-1)


# ------------------------------------------------------------------------------------- backends


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend name; skipped with the reason when it cannot run on CPU here."""
    name = request.param
    if name == "triton" and HAS_TRITON and not TRITON_IN_PROCESS:
        pytest.skip(
            "triton: runs in a fresh TRITON_INTERPRET=1 process (test_triton_backend_in_fresh_interpreter_process)"
        )
    reason = available_backends("cpu")[name]
    if reason is not None:
        pytest.skip(f"{name}: {reason}")
    return name


# Eager FlexAttention and the triton interpreter cost 0.1-0.5 s per call on 2 cores whatever the
# size: they get every case on the first shape and the two main forms on the others.
SLOW_BACKENDS = ("flex", "triton")
SLOW_CASES_OTHER_SHAPES = ("per_key", "full")


@pytest.mark.parametrize("case", list(BIAS_CASES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_backend_matches_oracle(backend: str, shape, case: str) -> None:
    if backend in SLOW_BACKENDS and shape != SHAPES[0] and case not in SLOW_CASES_OTHER_SHAPES:
        pytest.skip(f"{backend}: slow on CPU; this case is covered on the first shape")
    q, k, v, bias = _make(shape, case)
    ref = attention(q, k, v, bias, backend="einsum")  # [B, H, Lq, D]
    out = attention(q, k, v, bias, backend=backend)  # [B, H, Lq, D]
    assert out.shape == q.shape and out.dtype == q.dtype
    assert not out.isnan().any(), f"{backend} produced NaN for {case}"
    assert (out - ref).abs().max().item() <= TOL
    dead = _dead_mask(q, k, bias)  # [B, H, Lq]
    if case.startswith("dead"):
        assert dead.any(), "test case should contain fully masked rows"
    assert torch.equal(out[dead], torch.zeros_like(out[dead])), "fully masked rows must be exact zeros"


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.skipif(TRITON_IN_PROCESS, reason="started under TRITON_INTERPRET=1: the triton cases ran in-process")
def test_triton_backend_in_fresh_interpreter_process() -> None:
    """Runs this file's triton cases (tiny shapes) in a new process started with TRITON_INTERPRET=1."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__)), "-k", "triton"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    summary = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, summary
    passed = re.search(r"(\d+) passed", run.stdout)
    want = len(BIAS_CASES) + (len(SHAPES) - 1) * len(SLOW_CASES_OTHER_SHAPES) + 1  # + all-masked test
    assert passed and int(passed.group(1)) >= want, summary


def test_all_keys_masked_everywhere_gives_zeros(backend: str) -> None:
    q, k, v = _qkv((1, 2, 5, 16, 40))
    for bias in (torch.full((1, 16), NEG_INF), torch.full((1, 2, 5, 16), NEG_INF)):
        out = attention(q, k, v, bias, backend=backend)
        assert torch.equal(out, torch.zeros_like(q))


def test_auto_matches_oracle_and_picks_sdpa_on_cpu() -> None:
    for case in ("none", "per_key", "full", "dead_full"):
        q, k, v, bias = _make(SHAPES[0], case)
        ref = attention(q, k, v, bias, backend="einsum")
        assert (attention(q, k, v, bias) - ref).abs().max().item() <= TOL
    for form in ("none", "per_key", "full"):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            assert select_backend(form, "cpu", dtype) == "sdpa"
            assert select_backend(form, torch.device("cpu"), dtype) == "sdpa"


def test_auto_logs_its_choice_once(caplog: pytest.LogCaptureFixture) -> None:
    kernels.registry._announce.cache_clear()
    q, k, v, bias = _make(SHAPES[0], "per_key")
    with caplog.at_level(logging.DEBUG, logger="kernels"):
        attention(q, k, v, bias)
        attention(q, k, v, bias)
    picked = [r.getMessage() for r in caplog.records if r.name == "kernels"]
    assert len(picked) == 1 and "sdpa" in picked[0] and "per_key" in picked[0]


# -------------------------------------------------------------------------------- the oracle


def _loop_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias4: torch.Tensor) -> torch.Tensor:
    """Independent float64 python loops, written from the formula (no torch softmax/einsum)."""
    b_, h_, lq, d = q.shape
    lk = k.shape[2]
    out = torch.zeros(b_, h_, lq, d, dtype=torch.float64)
    for b in range(b_):
        for h in range(h_):
            for i in range(lq):
                logits = []
                for j in range(lk):
                    dot = sum(float(q[b, h, i, c]) * float(k[b, h, j, c]) for c in range(d))
                    logits.append(dot / math.sqrt(d) + float(bias4[b, h, i, j]))
                top = max(logits)
                if top == NEG_INF:
                    continue  # fully masked row: zeros by definition
                weights = [math.exp(x - top) for x in logits]
                total = sum(weights)
                for c in range(d):
                    out[b, h, i, c] = sum(w * float(v[b, h, j, c]) for j, w in enumerate(weights)) / total
    return out


def test_einsum_oracle_matches_python_loop() -> None:
    b, h, lq, lk, d = 2, 2, 3, 4, 5
    q, k, v = _qkv((b, h, lq, lk, d), seed=3)
    per_key = torch.tensor([[0.3, NEG_INF, -1.0, 2.0], [NEG_INF, NEG_INF, NEG_INF, NEG_INF]])  # [B, Lk]
    full = torch.randn(b, h, lq, lk, generator=torch.Generator().manual_seed(4))  # [B, H, Lq, Lk]
    full[0, 1, 2, :] = NEG_INF
    full[1, 0, 0, 1:] = NEG_INF
    cases = [
        (None, torch.zeros(b, h, lq, lk)),
        (per_key, per_key[:, None, None, :].expand(b, h, lq, lk)),
        (full, full),
    ]
    for bias, bias4 in cases:
        got = attention(q, k, v, bias, backend="einsum").double()
        want = _loop_attention(q, k, v, bias4)
        assert (got - want).abs().max().item() < 1e-5


# -------------------------------------------------------------------------- per-key fast paths


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("plan", ["mask", "fold"])
@pytest.mark.parametrize("case", ["per_key", "per_key_shared", "dead_per_key"])
def test_sdpa_per_key_plans_match_oracle(drop: bool, plan: str, case: str) -> None:
    """Both plans (CPU uses mask, CUDA may fold) are exact, with and without dropping -inf keys."""
    for shape in SHAPES:
        q, k, v, bias = _make(shape, case)
        ref = attention(q, k, v, bias, backend="einsum")
        out = _sdpa_per_key(q, k, v, bias, drop, plan)
        assert (out - ref).abs().max().item() <= TOL


def test_per_key_bias_is_never_expanded_for_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, ...] | None] = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append(None if attn_mask is None else tuple(attn_mask.shape))
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    q, k, v, bias = _make(SHAPES[0], "per_key")
    attention(q, k, v, bias, backend="sdpa")
    for drop in (False, True):
        for plan in ("mask", "fold"):
            _sdpa_per_key(q, k, v, bias, drop, plan)
    assert seen and all(s is None or (s[1], s[2]) == (1, 1) for s in seen), seen


def test_drop_masked_keys_keeps_order_and_shrinks() -> None:
    q, k, v = _qkv((2, 1, 4, 24, 16))
    bias = torch.full((2, 24), NEG_INF)  # [2, 24]
    bias[0, [0, 2, 5]] = torch.tensor([0.0, 1.0, 2.0])
    bias[1, [0, 2, 3, 5]] = torch.tensor([0.0, 1.0, 3.0, 2.0])
    kk, vv, bb = drop_masked_keys(k, v, bias)
    assert kk.shape == (2, 1, 8, 16) and vv.shape == (2, 1, 8, 16)  # 4 kept at most, rounded up to 8
    assert bb[0, :3].tolist() == [0.0, 1.0, 2.0] and (bb[0, 3:] == NEG_INF).all()  # padded with masked keys
    assert bb[1, :4].tolist() == [0.0, 1.0, 3.0, 2.0] and (bb[1, 4:] == NEG_INF).all()
    assert torch.equal(kk[1, 0, 2], k[1, 0, 3]) and torch.equal(vv[0, 0, 1], v[0, 0, 2])
    shared = bias[:1]  # [1, 24]: one index for the whole batch
    assert torch.equal(drop_masked_keys(k, v, shared)[0], k[:, :, [0, 2, 5, 1, 3, 4, 6, 7]])  # kept, then masked
    few = torch.zeros(2, 24)
    few[:, 0] = NEG_INF  # dropping 1 key in 24 is not worth a copy
    assert drop_masked_keys(k, v, few)[0] is k
    few[:, :12] = NEG_INF
    assert drop_masked_keys(k, v, few)[0].shape[2] == 16


def test_fold_reproduces_logits_and_is_free_for_sd15_head_dims() -> None:
    q, k, v = _qkv((1, 2, 3, 5, 40))
    bias = torch.tensor([[0.5, NEG_INF, -2.0, 0.0, 1.0]])
    qf, kf, vf = fold_per_key_bias(q, k, v, bias)
    assert qf.shape[-1] == 48 and torch.equal(vf[..., :40], v) and not vf[..., 40:].any()
    logits = qf @ kf.transpose(-1, -2)  # [1, 2, 3, 5]
    want = q @ k.transpose(-1, -2) / math.sqrt(40) + bias[:, None, None, :]  # [1, 2, 3, 5]
    kept = bias[0] != NEG_INF
    assert (logits - want)[..., kept].abs().max().item() < 1e-5
    assert (logits[..., ~kept] < -9000).all()  # exp() of it is exactly 0 next to the kept keys
    assert fold_is_free(40) and fold_is_free(80) and not fold_is_free(64) and not fold_is_free(160)


def test_xformers_bias_alignment_helpers() -> None:
    """xformers needs 16-byte aligned bias strides; checked on CPU since xformers itself needs CUDA."""
    bias = torch.randn(2, 13)[:, None, None, :]  # per-key [B, 1, 1, 13]: row stride 13, unaligned
    assert not _is_aligned(bias.expand(2, 4, 7, 13), torch.float32)
    for dtype in (torch.float32, torch.float16):
        fixed = _aligned_bias(bias, dtype)
        assert fixed.shape == bias.shape and torch.equal(fixed.float(), bias.to(dtype).float())
        expanded = fixed.expand(2, 4, 7, 13)  # [B, H, Lq, Lk] view: nothing Lq x Lk is allocated
        assert _is_aligned(expanded, dtype) and expanded.stride()[1:3] == (0, 0)


# ------------------------------------------------------------------------------ API and errors


def test_bias_form() -> None:
    assert bias_form(None) == "none"
    assert bias_form(torch.zeros(2, 9)) == "per_key"
    assert bias_form(torch.zeros(2, 1, 3, 9)) == "full"
    with pytest.raises(ValueError, match="2-D .* or 4-D"):
        bias_form(torch.zeros(2, 3, 9))


def test_four_d_key_bias_is_treated_as_per_key() -> None:
    q, k, v = _qkv(SHAPES[0])
    form, canon = check_inputs(q, k, v, torch.zeros(2, 1, 1, 53))
    assert form == "per_key" and canon.shape == (2, 53)


@pytest.mark.parametrize(
    ("q_shape", "k_shape", "bias_shape", "expected"),
    [
        ((2, 2, 5, 8), (2, 2, 7, 8), (2, 6), r"per-key bias must be \[B, Lk\] = \[2, 7\] .* got \(2, 6\)"),
        ((2, 2, 5, 8), (2, 2, 7, 8), (3, 7), r"per-key bias .* got \(3, 7\)"),
        ((2, 2, 5, 8), (2, 2, 7, 8), (2, 2, 4, 7), r"\[B, H, Lq, Lk\] = \[2, 2, 5, 7\] .* got \(2, 2, 4, 7\)"),
        ((2, 2, 5, 8), (2, 2, 7, 8), (2, 7, 1), r"got a 3-D tensor of shape \(2, 7, 1\)"),
        ((2, 2, 5, 8), (2, 2, 7, 6), None, r"k and v must both be \[B, H, Lk, D\] = \(2, 2, 7, 8\)"),
        ((2, 2, 5, 8), (1, 2, 7, 8), None, r"to match q \(2, 2, 5, 8\)"),
        ((2, 5, 8), (2, 2, 7, 8), None, r"q must be 4-D \[B, H, L, D\]; got shape \(2, 5, 8\)"),
    ],
)
def test_bad_shapes_raise_helpful_value_error(q_shape, k_shape, bias_shape, expected: str) -> None:
    q = torch.zeros(q_shape)
    k = torch.zeros(k_shape)
    bias = None if bias_shape is None else torch.zeros(bias_shape)
    with pytest.raises(ValueError, match=expected):
        attention(q, k, k.clone(), bias)


def test_bool_bias_and_mismatched_dtype_are_rejected() -> None:
    q, k, v = _qkv(SHAPES[0])
    with pytest.raises(ValueError, match="torch.where"):
        attention(q, k, v, torch.ones(2, 53, dtype=torch.bool))
    with pytest.raises(ValueError, match="share a dtype"):
        attention(q, k.double(), v, None)


def test_unknown_backend_raises() -> None:
    q, k, v = _qkv(SHAPES[0])
    with pytest.raises(
        ValueError, match=r"unknown attention backend 'flash'.*auto, sdpa, xformers, flex, triton, einsum"
    ):
        attention(q, k, v, backend="flash")
    with pytest.raises(ValueError, match="unknown bias form"):
        select_backend("diagonal", "cpu", torch.float32)


def test_unavailable_backends_raise_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v = _qkv(SHAPES[0])
    with pytest.raises(ValueError, match=r"'xformers' is not available for cpu tensors: .*available here: auto, sdpa"):
        attention(q, k, v, backend="xformers")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(
        ValueError, match=r"'triton' is not available for cpu tensors: .*(not installed|TRITON_INTERPRET)"
    ):
        attention(q, k, v, backend="triton")


def test_available_backends_reports_every_backend() -> None:
    report = available_backends("cpu")
    assert list(report) == list(BACKENDS)
    assert report["sdpa"] is None and report["einsum"] is None
    xformers_reason = report["xformers"]  # never usable on CPU: not installed, or CUDA-only
    assert isinstance(xformers_reason, str) and ("CUDA" in xformers_reason or "not installed" in xformers_reason)
    assert select_backend("per_key", "cuda", torch.float16) == "sdpa"  # pure policy: no GPU needed


def test_import_does_no_work() -> None:
    """Importing kernels must not import triton/xformers or initialise CUDA."""
    code = (
        "import sys, torch, kernels\n"
        "assert 'triton' not in sys.modules and 'xformers' not in sys.modules, sorted(sys.modules)\n"
        "assert not torch.cuda.is_initialized()\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
