"""Peak memory of FreeCustom's multi-reference self-attention: our fused control vs a materialised map.

Shapes are SD1.5's 64x64 self-attention layer (320 channels, 8 heads of 40): 4096 own tokens plus R·4096
reference tokens, the generated image's conditional row attending to all of them (half of each reference
marked as concept). The baseline is the official structure: logits and probabilities for the whole key
set built in full with einsum. Each variant runs in a fresh process and reports its peak resident memory
above the inputs (CUDA: max allocated). Run: python bench/mrsa_memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

TOKENS, CHANNELS, HEADS = 4096, 320, 8


def measure(variant: str, refs: int) -> dict:
    import torch
    from diffusers.models.attention_processor import Attention

    from attention_processors import BatchLayout, StepState, StudioAttnProcessor
    from attention_processors.multi_reference import MultiReferenceSelfAttention
    from attention_processors.sites import Site

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    attn = Attention(query_dim=CHANNELS, heads=HEADS, dim_head=CHANNELS // HEADS).eval().to(device)
    layout = BatchLayout.with_cfg(["target"]) + BatchLayout.without_cfg(["reference"] * refs)
    x = torch.randn(layout.size, TOKENS, CHANNELS, device=device)
    masks = [torch.zeros(64, 64) for _ in range(refs)]
    for m in masks:
        m[:, :32] = 1
    torch.set_num_threads(1)
    with torch.no_grad():
        q = attn.to_q(x[1:2])  # warm the projections so their buffers are part of the baseline
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with torch.no_grad():
        if variant == "fused":
            site = Site(
                "up_blocks.3.attentions.0.transformer_blocks.0.attn1", False, "up", 3, 0, 0, 1, 0, HEADS, 40, 30
            )
            state = StepState()
            state.update(index=0, total=1, timestep=0, layout=layout, latent_size=(64, 64))
            StudioAttnProcessor(site, [MultiReferenceSelfAttention(masks=masks)], state)(attn, x)
        else:  # the official structure: the whole map, materialised
            k, v = attn.to_k(x), attn.to_v(x)
            split = lambda t: t.view(t.shape[0], TOKENS, HEADS, -1).transpose(1, 2)  # noqa: E731
            q, k, v = split(q), split(k), split(v)
            k_cat = torch.cat([k[1:2]] + [k[2 + r : 3 + r] for r in range(refs)], dim=2)  # [1, H, L(1+R), D]
            v_cat = torch.cat([v[1:2]] + [v[2 + r : 3 + r] for r in range(refs)], dim=2)
            sim = torch.einsum("bhqd,bhkd->bhqk", q, k_cat) * 40**-0.5  # [1, H, L, L(1+R)]
            bias = torch.cat([torch.zeros(TOKENS)] + [torch.where(m.flatten() > 0, 3.0, float("-inf")) for m in masks])
            attn_map = (sim + bias.to(sim)).softmax(-1)
            attn.to_out[0]((attn_map @ v_cat).transpose(1, 2).reshape(1, TOKENS, CHANNELS))
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"variant": variant, "refs": refs, "peak_mib": (peak - base) / 2**20, "device": device}


def main() -> None:
    if len(sys.argv) == 3:
        print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
        return
    print(f"MRSA peak memory above inputs, SD1.5 64x64 layer ({TOKENS} own + R*{TOKENS} reference tokens)")
    print(f"{'R':>2} {'einsum map MiB':>15} {'fused MiB':>10} {'ratio':>7}")
    for refs in (1, 2, 3):
        runs = {}
        for variant in ("einsum", "fused"):
            out = subprocess.run(
                [sys.executable, __file__, variant, str(refs)], capture_output=True, text=True, check=True
            )
            runs[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        e, f = runs["einsum"]["peak_mib"], runs["fused"]["peak_mib"]
        print(f"{refs:>2} {e:>15.0f} {f:>10.0f} {e / max(f, 1e-9):>6.1f}x   ({runs['fused']['device']})")
    print("command: python bench/mrsa_memory.py")


if __name__ == "__main__":
    main()
