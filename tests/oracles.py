"""Deliberately naive einsum implementations of the published formulas, written independently of the
studio's code paths: every fused control is tested against these."""

from __future__ import annotations

import torch
from torch import Tensor


def heads(x: Tensor, n: int) -> Tensor:
    b, length, c = x.shape
    return x.view(b, length, n, c // n).permute(0, 2, 1, 3)  # [B, H, L, D]


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, logit_bias: Tensor | None = None) -> Tensor:
    """softmax(q kᵀ/√d + bias) v with an explicit [.., Lq, Lk] map; rows with no finite logit give 0."""
    logits = torch.einsum("hqd,hkd->hqk", q.double(), k.double()) / q.shape[-1] ** 0.5
    if logit_bias is not None:
        logits = logits + logit_bias.double()
    dead = torch.isinf(logits).all(dim=-1, keepdim=True)
    probs = torch.where(dead, 0.0, logits.masked_fill(dead, 0.0).softmax(-1))
    return torch.einsum("hqk,hkd->hqd", probs, v.double()).float()


def project_out(attn, per_row_heads: list[Tensor]) -> Tensor:
    """Merge heads of each row [H, L, D] and apply the module's output projection."""
    merged = torch.stack([o.permute(1, 0, 2).reshape(o.shape[1], -1) for o in per_row_heads])  # [B, L, H*D]
    return attn.to_out[0](merged)


def mutual_self_attention(attn, x: Tensor, target_source: dict[int, int], masks=None) -> Tensor:
    """MasaCtrl: rows in `target_source` take softmax(Q_t K_sᵀ) V_s; masks=(source_fg [L], target_fg [L])."""
    q, k, v = (heads(p(x), attn.heads) for p in (attn.to_q, attn.to_k, attn.to_v))
    rows = []
    for b in range(x.shape[0]):
        s = target_source.get(b, b)
        if masks is None or b not in target_source:
            rows.append(softmax_attention(q[b], k[s], v[s]))
            continue
        src_fg, tgt_fg = masks
        fg_bias = torch.where(src_fg > 0, 0.0, float("-inf"))[None, None, :]
        bg_bias = torch.where(src_fg > 0, float("-inf"), 0.0)[None, None, :]
        fg = softmax_attention(q[b], k[s], v[s], fg_bias)
        bg = softmax_attention(q[b], k[s], v[s], bg_bias)
        m = tgt_fg[None, :, None]
        rows.append(fg * m + bg * (1 - m))
    return project_out(attn, rows)


def multi_reference_self_attention(
    attn, x: Tensor, targets: dict[int, float], refs: list[int], masks: list[Tensor], weights: list[float]
) -> Tensor:
    """FreeCustom MRSA: target rows attend to [own; ref_1..ref_R] with bias w_i on mask, -inf off mask.

    `targets` maps a target row to its MRSA share (1 - style_fidelity on the uncond half); the rest of the
    row is plain self-attention.
    """
    q, k, v = (heads(p(x), attn.heads) for p in (attn.to_q, attn.to_k, attn.to_v))
    rows = []
    for b in range(x.shape[0]):
        plain = softmax_attention(q[b], k[b], v[b])
        share = targets.get(b, 0.0)
        if share == 0.0:
            rows.append(plain)
            continue
        k_cat = torch.cat([k[b]] + [k[r] for r in refs], dim=1)  # [H, L(1+R), D]
        v_cat = torch.cat([v[b]] + [v[r] for r in refs], dim=1)
        bias = [torch.zeros(x.shape[1])]
        bias += [torch.where(m > 0, w, float("-inf")) for m, w in zip(masks, weights, strict=False)]
        mrsa = softmax_attention(q[b], k_cat, v_cat, torch.cat(bias)[None, None, :])
        rows.append(share * mrsa + (1 - share) * plain)
    return project_out(attn, rows)


def gradual_sampling_full(attn, x: Tensor, reference: int, views: list[int], alpha: float) -> Tensor:
    """FGS with every token sampled: view k = (1-α)·attn(ref) + α·attn(concat of views 0..k-1); view 0 = attn(ref)."""
    q, k, v = (heads(p(x), attn.heads) for p in (attn.to_q, attn.to_k, attn.to_v))
    rows = [softmax_attention(q[b], k[b], v[b]) for b in range(x.shape[0])]
    for pos, b in enumerate(views):
        ref = softmax_attention(q[b], k[reference], v[reference])
        if pos == 0:
            rows[b] = ref
            continue
        k_prev = torch.cat([k[r] for r in views[:pos]], dim=1)
        v_prev = torch.cat([v[r] for r in views[:pos]], dim=1)
        rows[b] = (1 - alpha) * ref + alpha * softmax_attention(q[b], k_prev, v_prev)
    return project_out(attn, rows)


def regional_cross_attention(
    attn, x: Tensor, context: Tensor, regions: list[tuple[Tensor, Tensor]], rows: list[int], delta: float
) -> Tensor:
    """RAG soft refinement: on `rows`, out(q) = (1 − δ[c>0])·attn(q, global) + δ Σ_r m_r(q)/c(q)·attn(q, region r).

    `regions` are (region text [L, C], token mask [Lq] at this site); c(q) = Σ_r m_r(q). Other rows: global only.
    """
    q = heads(attn.to_q(x), attn.heads)
    k, v = heads(attn.to_k(context), attn.heads), heads(attn.to_v(context), attn.heads)
    out = []
    for b in range(x.shape[0]):
        plain = softmax_attention(q[b], k[b], v[b])  # [H, Lq, D]
        if b not in rows or not regions:
            out.append(plain)
            continue
        count = sum(m for _, m in regions)  # [Lq]
        mixed = plain * (1 - delta * (count > 0).float())[None, :, None]
        for text, mask in regions:
            kr, vr = heads(attn.to_k(text[None]), attn.heads)[0], heads(attn.to_v(text[None]), attn.heads)[0]
            weight = torch.where(count > 0, delta * mask / count.clamp(min=1), 0.0)
            mixed = mixed + softmax_attention(q[b], kr, vr) * weight[None, :, None]
        out.append(mixed)
    return project_out(attn, out)

def uniform_cross_attention(attn, x: Tensor, text: Tensor, uniform_rows: set[int]) -> Tensor:
    """UAM: rows in `uniform_rows` take the uniform map A = 1/L over the L text tokens (the paper's form,
    an explicit ones(Lq, L)/L map times V); the other rows take ordinary cross-attention."""
    q, k, v = heads(attn.to_q(x), attn.heads), heads(attn.to_k(text), attn.heads), heads(attn.to_v(text), attn.heads)
    rows = []
    for b in range(x.shape[0]):
        if b in uniform_rows:
            probs = torch.ones(q.shape[1], q.shape[2], k.shape[2], dtype=torch.float64) / k.shape[2]  # [H, Lq, L]
            rows.append(torch.einsum("hqk,hkd->hqd", probs, v[b].double()).float())
        else:
            rows.append(softmax_attention(q[b], k[b], v[b]))
    return project_out(attn, rows)
