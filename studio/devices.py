"""Device, dtype and memory policy: one place that decides where and how a model runs.

Why: every entry point (CLI, UI, batch) must make the same choice, and tests must get float32 on CPU.
CUDA runs in half precision (fp16 by default, bf16 on request where supported); CPU always runs fp32
(bf16 was measured unusably slow on CPUs without AVX-512). Nothing is probed at import time.

Memory presets trade speed for VRAM: VAE slicing/tiling decode in pieces, model CPU offload keeps only
the running component on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from studio.errors import DeviceError

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

Precision = Literal["auto", "fp32", "fp16", "bf16"]
MemoryPreset = Literal["none", "vae-slicing", "vae-tiling", "cpu-offload"]
MEMORY_PRESETS: tuple[str, ...] = ("none", "vae-slicing", "vae-tiling", "cpu-offload")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class DevicePolicy:
    """Where the pipeline runs (`device`), in which dtype, and with which memory preset."""

    device: str = "cpu"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    memory: MemoryPreset = "none"
    compile: bool = False  # torch.compile the UNet in place (`--compile`); off by default: minutes of first-call cost

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]


def choose_device_policy(
    device: str = "auto", precision: Precision = "auto", memory: MemoryPreset = "none", *, compile: bool = False
) -> DevicePolicy:
    """Resolve `auto` choices against this machine and refuse impossible combinations clearly."""
    import torch

    if memory not in MEMORY_PRESETS:
        raise DeviceError(f"unknown memory preset {memory!r}; expected one of {', '.join(MEMORY_PRESETS)}")
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but CUDA is not available on this machine")
    if device != "cpu" and not device.startswith("cuda"):
        raise DeviceError(f"unknown device {device!r}; expected auto, cpu or cuda[:N]")
    on_cuda = device.startswith("cuda")
    if precision == "auto":
        precision = "fp16" if on_cuda else "fp32"
    if precision == "bf16" and on_cuda and not torch.cuda.is_bf16_supported():
        raise DeviceError("bf16 was requested but this GPU does not support it; use fp16")
    if precision != "fp32" and not on_cuda:
        raise DeviceError(f"{precision} on CPU is not supported (too slow and imprecise); use fp32")
    if memory == "cpu-offload" and not on_cuda:
        raise DeviceError("the cpu-offload memory preset needs a CUDA device")
    return DevicePolicy(device=device, precision=precision, memory=memory, compile=compile)


def place_pipeline(pipe: DiffusionPipeline, policy: DevicePolicy) -> DiffusionPipeline:
    """Move a loaded pipeline to its device and apply the memory preset."""
    vae = getattr(pipe, "vae", None)
    if policy.memory == "vae-slicing" and vae is not None:
        vae.enable_slicing()
    if policy.memory == "vae-tiling" and vae is not None:
        vae.enable_tiling()
    if policy.memory == "cpu-offload":
        pipe.enable_model_cpu_offload(device=policy.device)
    else:
        pipe.to(policy.device)
    if policy.compile:
        # In place (`nn.Module.compile`), so the module tree, its names and the attention sites stay as they are:
        # the studio's processors install on a compiled UNet exactly as on an eager one.
        pipe.unet.compile()
    return pipe


def available_memory_bytes(device: torch.device | str) -> int:
    """Memory a run may still take on `device`: free VRAM on CUDA, available RAM on CPU."""
    import os

    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
