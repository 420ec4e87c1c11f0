"""bench/gpu_suite.py's pieces at tiny size on CPU, so the device run (rare, minutes long) works the first time.

Oracles: the einsum backend (a backend skewed or stripped of its bias must fail its row), `unavailable_reason`
(xformers never runs on CPU: its rows must be skips, not errors), SDXL base's published UNet size, and the
child process's JSON lines (a crash must name the call it happened in). No wall-clock asserts.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

import kernels.dispatch
from bench.gpu_checks import KernelCase, kernel_rows, unet_oracle_rows
from bench.gpu_report import Budget, Row, tables
from bench.gpu_speed import CompileCost, Timing, freecustom_rows, speed_row
from bench.gpu_suite import parse_child
from bench.shaped_unets import call_inputs, sdxl_shaped_unet
from pipelines.tiny_models import tiny_sd15_pipeline

CPU = torch.device("cpu")
CASE = KernelCase("tiny", (2, 2, 32, 48, 40), ("none", "per_key", "full"))
LATENT = 8
TOL = 1e-5


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    return tiny_sd15_pipeline().unet


def _patch_sdpa(monkeypatch: pytest.MonkeyPatch, wrap) -> None:
    """Make the `sdpa` backend `wrap(real_sdpa)`; the einsum oracle stays untouched."""
    real = kernels.dispatch.implementation
    monkeypatch.setattr(
        kernels.dispatch, "implementation", lambda name: wrap(real(name)) if name == "sdpa" else real(name)
    )


def test_kernel_rows_hold_each_bias_form_to_the_oracle():
    rows = kernel_rows([CASE], ["sdpa"], CPU, torch.float32, TOL)
    assert [r.cells["bias"] for r in rows] == ["none", "per_key", "full"]
    assert all(r.ok for r in rows), [r.status for r in rows]
    assert all(r.cells["max abs diff"] <= TOL for r in rows)


def test_a_backend_off_the_oracle_fails_its_kernel_rows(monkeypatch):
    _patch_sdpa(monkeypatch, lambda fn: lambda *args: fn(*args) * 1.01)
    rows = kernel_rows([CASE], ["sdpa"], CPU, torch.float32, TOL)
    assert [r.status for r in rows] == ["FAIL"] * 3


def test_an_unavailable_backend_gets_skip_rows_not_an_error(unet):
    rows = kernel_rows([CASE], ["xformers"], CPU, torch.float32, TOL)
    assert all(r.skipped and "xformers" in r.status for r in rows)
    row = speed_row(
        "tiny", unet, LATENT, "studio", "xformers", "none", Timing(1, 1, None), Budget(None), CompileCost({})
    )
    assert row.skipped and "xformers" in row.status
    assert "| none | xformers | skipped: not installed/unavailable: xformers" in tables(rows)


def test_unet_oracle_rows_check_stock_and_each_backend_with_and_without_mrsa(unet):
    rows = unet_oracle_rows("tiny", unet, LATENT, ["sdpa", "xformers"], 1e-4)
    by = {(r.cells["control"], r.cells["backend"]): r for r in rows}
    assert set(by) == {("none", "stock"), ("none", "sdpa"), ("none", "xformers"), ("MRSA R=2", "sdpa"),
                       ("MRSA R=2", "xformers")}  # fmt: skip
    assert by[("none", "stock")].ok and by[("none", "sdpa")].ok and by[("MRSA R=2", "sdpa")].ok
    assert by[("MRSA R=2", "sdpa")].cells["batch"] == 4 and by[("MRSA R=2", "sdpa")].cells["rel L2 error"] <= 1e-5
    assert by[("none", "xformers")].skipped


def test_a_backend_that_drops_the_per_key_bias_fails_the_mrsa_row_only(unet, monkeypatch):
    """MRSA's reference weights reach the kernel as a per-key bias: the MRSA row must see it ignored."""
    _patch_sdpa(monkeypatch, lambda fn: lambda q, k, v, bias, form: fn(q, k, v, None, "none"))
    rows = unet_oracle_rows("tiny", unet, LATENT, ["sdpa"], 1e-4)
    status = {(r.cells["control"], r.cells["backend"]): r.status for r in rows}
    assert status[("none", "sdpa")] == "ok"
    assert status[("MRSA R=2", "sdpa")] == "FAIL"


@pytest.mark.slow
def test_speed_row_compiles_one_graph_without_breaks_that_equals_eager(unet):
    timing = Timing(calls=2, repeats=1, compile_backend="eager")  # dynamo's capture, without inductor
    row = speed_row("tiny", unet, LATENT, "studio", "sdpa", "none", timing, Budget(None), CompileCost({"tiny": 1.0}))
    assert row.ok, row.status
    assert row.cells["breaks"] == 0 and str(row.cells["graphs"]).startswith("1->")
    assert row.cells["compiled vs eager rel err"] <= 1e-6
    assert row.cells["compiled calls/s"] is not None and unet._compiled_call_impl is None  # eager again after


def test_a_compile_the_budget_cannot_fit_is_skipped_and_eager_still_timed(unet):
    timing = Timing(calls=1, repeats=1, compile_backend="inductor")
    row = speed_row("tiny", unet, LATENT, "stock", "sdpa", "none", timing, Budget(10.0), CompileCost({"tiny": 60.0}))
    assert row.status.startswith("compiled: skipped, time budget (its compile needs ~60 s")
    assert row.cells["compiled calls/s"] is None and row.cells["eager calls/s"] is not None


def test_freecustom_rows_add_one_batch_row_per_reference(unet):
    rows = freecustom_rows("tiny", unet, LATENT, (1, 2, 3), Timing(1, 1, None))
    assert [(r.cells["R"], r.cells["batch"]) for r in rows] == [(0, 2), (1, 3), (2, 4), (3, 5)]
    assert all(r.ok and "peak GiB" not in r.cells for r in rows)  # peak memory is a CUDA figure


def test_a_crash_in_the_per_call_child_names_its_call_and_skips_that_backend():
    done = Row("kernels", {"case": "c", "bias": "none", "backend": "sdpa", "max abs diff": 1e-4}, "ok")
    lines = [{"running": ["c", "none", "sdpa"]}, asdict(done), {"running": ["c", "per_key", "triton"]}]
    stdout = "warning from a library\n" + "\n".join(json.dumps(x) for x in lines)
    rows, skip = parse_child(stdout, -11, "Fatal Python error: Segmentation fault")
    assert rows[0] == done
    assert rows[1].cells == {"case": "c", "bias": "per_key", "backend": "triton"}
    assert rows[1].status.startswith("failed: the per-call check process ended (exit -11: Fatal Python error")
    assert list(skip) == ["triton"]
    assert parse_child("\n".join(json.dumps(x) for x in lines[:2]), 0, "") == ([done], {})


@pytest.mark.slow
def test_sdxl_shaped_unet_is_sdxl_base_and_takes_its_added_conditioning():
    with torch.device("meta"):
        unet = sdxl_shaped_unet()
    assert sum(p.numel() for p in unet.parameters()) == 2_567_463_684  # SDXL base's UNet
    inputs = call_inputs(unet, 2, 128, torch.device("meta"), torch.float32)
    added = inputs["added_cond_kwargs"]
    assert added["text_embeds"].shape == (2, 1280) and added["time_ids"].shape == (2, 6)
    out = unet(**inputs, timestep=torch.tensor(500), return_dict=False)[0]  # shapes only: meta tensors
    assert out.shape == (2, 4, 128, 128)
