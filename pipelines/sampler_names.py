"""Sampler names, ours and AUTOMATIC1111's, free of torch and diffusers.

Why a module of its own: a job names its sampler, and the studio checks and normalises that name when it
reads a job or builds its CLI, which must not import torch (`studio --help` stays fast).
`pipelines.samplers` maps each name to its diffusers scheduler class.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

DEFAULT_SAMPLER = "ddim"

A1111_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "ddim": "DDIM",
        "euler": "Euler",
        "euler_a": "Euler a",
        "dpmpp_2m": "DPM++ 2M",
        "dpmpp_2m_karras": "DPM++ 2M Karras",
        "dpmpp_sde": "DPM++ SDE",
        "unipc": "UniPC",
        "lcm": "LCM",
    }
)  # canonical name -> A1111's display name

# Other spellings: ComfyUI's ("euler_ancestral", "dpmpp_2m_sde", "uni_pc") and k-diffusion's.
_ALIASES = {
    "euler_ancestral": "euler_a",
    "dpmpp_2m_sde": "dpmpp_sde",
    "uni_pc": "unipc",
    "k_euler": "euler",
    "k_euler_a": "euler_a",
}


def _key(name: str) -> str:
    return name.strip().lower().replace("++", "pp").replace(" ", "_").replace("-", "_")


_BY_KEY = {
    **{_key(name): name for name in A1111_NAMES},
    **{_key(a1111): name for name, a1111 in A1111_NAMES.items()},
    **_ALIASES,
}


def canonical_sampler(name: str) -> str:
    """Our name of the sampler `name` (canonical, e.g. "dpmpp_2m_karras", or A1111's, "DPM++ 2M Karras")."""
    canonical = _BY_KEY.get(_key(name)) if isinstance(name, str) else None
    if canonical is None:
        valid = ", ".join(f"{n} ({a!r})" for n, a in A1111_NAMES.items())
        raise ValueError(f"unknown sampler {name!r}; valid: {valid}")
    return canonical


def sampler_names() -> list[str]:
    """Each sampler's canonical and A1111 name (spelling is free: case, spaces, "++"/"pp"), for help texts."""
    return [n for name, a1111 in A1111_NAMES.items() for n in (name, a1111)]
