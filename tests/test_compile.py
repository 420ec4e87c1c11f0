"""The compiled path: the studio's processors trace into one graph and do not recompile per step.

Oracles: `torch._dynamo.explain` (graph breaks), a `CompileCounter` backend (how many frames dynamo compiled)
and the eager UNet through the same processors (the compiled output must equal it). The counter backend runs
the captured graph without inductor, so these tests stay fast on CPU; inductor itself is measured by
bench/compiled_overhead.py.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter

from attention_processors import BatchLayout, StepWindow, attention_control
from attention_processors.multi_reference import MultiReferenceSelfAttention
from attention_processors.mutual_self_attention import MaskPair, MutualSelfAttention
from attention_processors.visctrl import visctrl_control
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline
from tests.unet_calls import unet_inputs

LATENT = (8, 8)
MUTUAL = BatchLayout.with_cfg(["source", "target"])
REFERENCES = BatchLayout.with_cfg(["target"]) + BatchLayout.without_cfg(["reference", "reference"])


def _blob(top: int, left: int, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(LATENT)
    mask[top : top + height, left : left + width] = 1
    return mask


CASES = {
    "none": (list, MUTUAL),
    "mutual": (lambda: [MutualSelfAttention(steps=StepWindow())], MUTUAL),
    "mutual_masked": (
        lambda: [MutualSelfAttention(steps=StepWindow(), masks=MaskPair(_blob(1, 1, 4, 5), _blob(3, 2, 4, 5)))],
        MUTUAL,
    ),
    "visctrl": (lambda: [visctrl_control(start=0.0)], BatchLayout.with_cfg(["reference", "target"])),
    "freecustom_mrsa": (
        lambda: [MultiReferenceSelfAttention(masks=[_blob(0, 0, 4, 4), _blob(4, 4, 4, 4)], weights=[3.0, 2.0])],
        REFERENCES,
    ),
}


@pytest.fixture(scope="module")
def unets() -> dict[str, torch.nn.Module]:
    return {"sd15": tiny_sd15_pipeline().unet, "sdxl": tiny_sdxl_pipeline().unet}


# SD1.5-shaped: every case (plain MasaCtrl slow: the masked one runs the same path and more); SDXL-shaped: no
# control fast, the controls (4-5 s each) slow.
FORWARDS = [pytest.param(case, "sd15", marks=pytest.mark.slow if case == "mutual" else ()) for case in CASES] + [
    pytest.param(case, "sdxl", marks=() if case == "none" else pytest.mark.slow) for case in CASES
]


@pytest.mark.parametrize(("case", "family"), FORWARDS)
def test_a_unet_forward_through_the_studios_processors_has_no_graph_break(unets, family, case):
    build, layout = CASES[case]
    unet = unets[family]
    inputs = unet_inputs(unet, layout.size, LATENT)
    torch._dynamo.reset()
    with torch.no_grad(), attention_control(unet, build()) as state:
        state.update(index=5, total=10, timestep=500, layout=layout, latent_size=LATENT)
        explained = torch._dynamo.explain(unet)(**inputs)
    reasons = sorted({str(b.reason).splitlines()[0] for b in explained.break_reasons})
    assert explained.graph_break_count == 0, reasons
    assert explained.graph_count == 1


def test_a_control_switching_on_mid_run_recompiles_at_most_twice_and_equals_eager(unets):
    unet = unets["sd15"]
    layout = MUTUAL
    inputs = unet_inputs(unet, layout.size, LATENT)
    control = MutualSelfAttention(steps=StepWindow(0.3, 1.0))  # off for steps 0-2, on from step 3 of 10
    counter = CompileCounter()
    torch._dynamo.reset()
    compiled = torch.compile(unet, backend=counter)
    outputs = {}
    with torch.no_grad(), attention_control(unet, [control]) as state:
        for i, t in enumerate(range(900, -1, -100)):
            state.update(index=i, total=10, timestep=t, layout=layout, latent_size=LATENT)
            step_inputs = dict(inputs, timestep=torch.tensor(t))
            outputs[i] = (compiled(**step_inputs).sample, unet(**step_inputs).sample)
    # One graph without the control, one with it (the switch at step 3): guards, not per-step recompiles.
    assert counter.frame_count == 2, f"{counter.frame_count} compiles over 10 steps"
    for i, (got, want) in outputs.items():
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0, msg=lambda m, i=i: f"step {i}: {m}")


@pytest.mark.slow
def test_every_control_of_the_contract_traces_without_a_graph_break(unets):
    """Each control-contract entry, switched on, on the tiny SD1.5 UNet (about 3 s per entry)."""
    from tests.test_control_contract import ENTRIES, STEP, TOTAL, Scene
    from tests.test_control_contract import LATENT as CONTRACT_LATENT

    unet = unets["sd15"]
    breaks = {}
    for entry in ENTRIES:
        inputs = unet_inputs(unet, entry.layout.size, CONTRACT_LATENT)
        torch._dynamo.reset()
        with torch.no_grad(), attention_control(unet, [entry.build(Scene("sd15", entry.layout))]) as state:
            state.update(index=STEP, total=TOTAL, timestep=500, layout=entry.layout, latent_size=CONTRACT_LATENT)
            explained = torch._dynamo.explain(unet)(**inputs)
        if explained.graph_break_count:
            breaks[entry.name] = sorted({str(b.reason).splitlines()[0] for b in explained.break_reasons})
    assert not breaks, breaks


@pytest.mark.parametrize("backend", ["flex", "einsum", "sdpa"])
def test_a_named_backend_traces_without_a_graph_break(backend):
    """A named backend's availability check imports modules (dynamo cannot trace that); it must be read as a
    constant so a compiled UNet on `backend="flex"` measures the kernel, not a break per attention call."""
    from kernels import attention

    q = torch.randn(1, 2, 16, 8)  # [B, H, L, D]
    explained = torch._dynamo.explain(lambda q, k, v: attention(q, k, v, backend=backend))(q, q, q)
    assert explained.graph_break_count == 0, explained.break_reasons
