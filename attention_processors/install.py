"""Install the studio's processors for the duration of a block and always put the originals back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn

from attention_processors.control import Control
from attention_processors.processor import StudioAttnProcessor
from attention_processors.sites import discover_sites
from attention_processors.state import StepState


@contextmanager
def attention_control(
    unet: nn.Module,
    controls: Sequence[Control] = (),
    *,
    state: StepState | None = None,
    backend: str = "auto",
) -> Iterator[StepState]:
    """Yield the step state the pipeline must update before each UNet call.

    The original processors are restored in `finally`, so an exception or a cancelled job never leaves a
    UNet half-controlled. Nested installations restore the outer ones.
    """
    controls = tuple(controls)
    for control in controls:
        if not isinstance(control, Control):
            raise TypeError(f"attention_control expects Control objects, got {type(control).__name__}")
        if control.is_abstract:
            raise TypeError(
                f"{type(control).__qualname__} is an abstract control base; install a concrete subclass that "
                "defines `active`"
            )
    state = state if state is not None else StepState()
    original = unet.attn_processors  # a fresh {name.processor: processor} dict
    sites = discover_sites(unet)
    device = next(unet.parameters()).device

    def prepare(current: StepState) -> None:
        if current.updates and current.latent_size is not None:
            for control in controls:
                control.prepare(sites, current, device)

    processors = {f"{site.name}.processor": StudioAttnProcessor(site, controls, state, backend) for site in sites}
    if processors.keys() != original.keys():
        missing = sorted(set(original) - set(processors))[:3]
        raise RuntimeError(f"could not place a site on every attention module (e.g. {missing})")
    state.listeners.append(prepare)
    prepare(state)
    unet.set_attn_processor(processors)
    try:
        yield state
    finally:
        unet.set_attn_processor(original)
        state.listeners.remove(prepare)
        for processor in processors.values():
            processor.detach()
