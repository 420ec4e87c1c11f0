"""Our Triton flash-attention forward kernel with an optional additive bias.

Imported only by :mod:`kernels.triton_backend` on first use, because importing triton is slow and
triton is an optional extra. ``@triton.jit`` reads ``TRITON_INTERPRET`` when this module is imported,
so set ``TRITON_INTERPRET=1`` *before* the first triton call to run it on CPU tensors (tests only).

Algorithm (FlashAttention-2 forward): one program per (query tile, batch*head). It streams key/value
tiles, keeps a running row max ``m`` and row sum ``l`` of exp2-scaled scores (online softmax) and a
float32 accumulator, and divides once at the end. Scores are kept in log2 units (scale and bias are
pre-multiplied by log2(e)) so the inner loop uses ``exp2``.

Bias modes (a compile-time constant, so the no-bias kernel carries no bias code):
  0 none; 1 per-key: one vector load of ``BLOCK_N`` values per key tile (FreeCustom's weighted mask
  costs ~nothing); 2 full: a ``[BLOCK_M, BLOCK_N]`` tile load per key tile, broadcast dims via
  stride 0.

-inf handling: a row whose scores so far are all -inf has ``m = -inf``; subtracting it would give
``-inf - -inf = NaN``, so the kernel subtracts 0 instead (``m_safe``). Such rows accumulate
``l = 0`` and are written as zeros, the package-wide rule for fully masked rows.

Head dims that are not powers of two (SD1.5: 40, 80, 160) are padded to ``BLOCK_D`` with masked
loads; padded channels are zeros and do not change q·k or the output.
"""

from __future__ import annotations

import triton
import triton.language as tl

# log2(e): scores and biases are moved to log2 units so the loop can use exp2.
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def attention_fwd_kernel(
    Q,
    K,
    V,
    Bias,
    Out,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_vd,
    stride_bb,
    stride_bh,
    stride_bm,
    stride_bn,
    stride_ob,
    stride_oh,
    stride_om,
    stride_od,
    num_heads,
    len_q,
    len_k,
    head_dim,
    qk_scale_log2,
    BIAS_MODE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // num_heads).to(tl.int64)
    h = (pid_bh % num_heads).to(tl.int64)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M]
    offs_n = tl.arange(0, BLOCK_N)  # [BLOCK_N]
    offs_d = tl.arange(0, BLOCK_D)  # [BLOCK_D]
    m_ok = offs_m < len_q
    d_ok = offs_d < head_dim

    q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=m_ok[:, None] & d_ok[None, :], other=0.0)  # [BLOCK_M, BLOCK_D]

    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    bias_base = Bias + b * stride_bb + h * stride_bh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running row max (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running row sum of exp2
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)  # running numerator

    for start_n in range(0, len_k, BLOCK_N):
        offs_kn = start_n + offs_n  # [BLOCK_N]
        n_ok = offs_kn < len_k
        k = tl.load(
            k_base + offs_kn[None, :] * stride_kn + offs_d[:, None] * stride_kd,
            mask=d_ok[:, None] & n_ok[None, :],
            other=0.0,
        )  # [BLOCK_D, BLOCK_N]
        s = tl.dot(q, k, input_precision=INPUT_PRECISION) * qk_scale_log2  # [BLOCK_M, BLOCK_N]
        if BIAS_MODE == 1:
            bias_row = tl.load(bias_base + offs_kn * stride_bn, mask=n_ok, other=float("-inf"))  # [BLOCK_N]
            s += bias_row.to(tl.float32)[None, :] * LOG2E
        elif BIAS_MODE == 2:
            bias_tile = tl.load(
                bias_base + offs_m[:, None] * stride_bm + offs_kn[None, :] * stride_bn,
                mask=m_ok[:, None] & n_ok[None, :],
                other=float("-inf"),
            )  # [BLOCK_M, BLOCK_N]
            s += bias_tile.to(tl.float32) * LOG2E
        s = tl.where(n_ok[None, :], s, float("-inf"))  # padding keys never count

        m_new = tl.maximum(m_i, tl.max(s, 1))  # [BLOCK_M]
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # avoid -inf - -inf = NaN
        alpha = tl.exp2(m_i - m_safe)  # rescale of the old state; 0 when m_i = -inf
        p = tl.exp2(s - m_safe[:, None])  # [BLOCK_M, BLOCK_N]
        l_i = l_i * alpha + tl.sum(p, 1)

        v = tl.load(
            v_base + offs_kn[:, None] * stride_vn + offs_d[None, :] * stride_vd,
            mask=n_ok[:, None] & d_ok[None, :],
            other=0.0,
        )  # [BLOCK_N, BLOCK_D]
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=INPUT_PRECISION)
        m_i = m_new

    # Fully masked rows have l = 0 and acc = 0: divide by 1 so they come out as exact zeros.
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]  # [BLOCK_M, BLOCK_D]
    o_ptrs = Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])
