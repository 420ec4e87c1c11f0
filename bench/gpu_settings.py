"""What bench/gpu_suite.py runs, stated once: the full device run, `--quick`, and the CPU `--dry-run`.

Sizing (one H100/H200, the suite inside 10 minutes): the timed blocks are cheap (an SD1.5-shaped call at
batch 2 takes tens of ms, an SDXL-shaped one under 0.1 s), so the repeats below cost seconds per row. Compiling
is what costs: about a minute or two per compiled arm (SDXL's more), each arm compiled afresh after
`torch._dynamo.reset()` (inductor's on-disk caches still reuse the kernels an earlier arm built). The priors
are guesses until a device run measures them; after an arm compiles, its measured time replaces the prior.
The jobs run most-wanted first, and a compile that the budget cannot fit is skipped with a row that says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from bench.gpu_checks import KernelCase
from bench.gpu_speed import Timing

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

# Per-call and per-UNet-call tolerances against the float32 einsum oracle. Per call: max |diff| of outputs
# whose values are O(1) (random normal q, k, v), a few ulps of the dtype. Per UNet call: relative L2 error of
# the whole output; a wrong mask or a dropped reference moves it by far more.
KERNEL_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}
UNET_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}

# (B, H, Lq, Lk, D) at the shapes a UNet call makes: SD1.5's 64² self-attention with one reference's tokens
# appended (MRSA, head dim 40), its 32² (hd 80) and 16² (hd 160) levels, SDXL's 64² level (hd 64), and
# cross-attention's 77 text keys (regional prompts use a full bias there).
DEVICE_KERNEL_CASES = (
    KernelCase("SD1.5 64² + ref", (2, 8, 4096, 6144, 40), ("none", "per_key", "full")),
    KernelCase("SD1.5 32²", (2, 8, 1024, 1024, 80), ("none", "per_key")),
    KernelCase("SD1.5 16²", (2, 8, 256, 256, 160), ("none", "per_key")),
    KernelCase("SDXL 64²", (2, 10, 4096, 4096, 64), ("none", "per_key", "full")),
    KernelCase("cross-attn", (2, 8, 4096, 77, 40), ("none", "full")),
)
TINY_KERNEL_CASES = (
    KernelCase("tiny + ref", (2, 2, 64, 96, 40), ("none", "per_key", "full")),
    KernelCase("tiny hd160", (2, 2, 16, 16, 160), ("none",)),
    KernelCase("tiny cross-attn", (2, 2, 64, 77, 40), ("full",)),
)


@dataclass(frozen=True)
class SuiteSettings:
    device: str = "cuda"
    dtype: str = "fp16"
    tiny: bool = False  # the tiny test UNets instead of the full-size shapes
    latent: dict[str, int] = field(default_factory=lambda: {"SD1.5": 64, "SDXL": 128})  # 512² and 1024² images
    timing: dict[str, Timing] = field(
        default_factory=lambda: {
            "SD1.5": Timing(calls=10, repeats=8, compile_backend="inductor"),
            "SDXL": Timing(calls=4, repeats=6, compile_backend="inductor"),
        }
    )
    kernel_cases: tuple[KernelCase, ...] = DEVICE_KERNEL_CASES
    freecustom_refs: tuple[int, ...] = (1, 2, 3)
    budget_s: float | None = 540.0  # the device allows 10 minutes a command: leave a minute for start and exit
    compile_prior_s: dict[str, float] = field(default_factory=lambda: {"SD1.5": 90.0, "SDXL": 180.0})
    extra_compiles: bool = True  # compile the other backends, the control arms and reduce-overhead too
    kernel_subprocess: bool = True  # per-call checks in a child process: a crashing kernel cannot end the suite
    backends: tuple[str, ...] = ("sdpa", "flex", "triton", "xformers")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


FULL = SuiteSettings()
QUICK = replace(
    FULL,
    timing={
        "SD1.5": Timing(calls=10, repeats=4, compile_backend="inductor"),
        "SDXL": Timing(calls=4, repeats=3, compile_backend=None),  # SDXL compiles take minutes: eager only
    },
    budget_s=300.0,
    extra_compiles=False,
)
DRY_RUN = replace(
    FULL,
    device="cpu",
    dtype="fp32",
    tiny=True,
    latent={"SD1.5": 16, "SDXL": 16},
    timing={
        "SD1.5": Timing(calls=2, repeats=2, compile_backend="eager"),
        "SDXL": Timing(calls=2, repeats=1, compile_backend="eager"),
    },
    kernel_cases=TINY_KERNEL_CASES,
    budget_s=None,
    compile_prior_s={"SD1.5": 30.0, "SDXL": 30.0},
)
