"""The attention-control framework against diffusers' stock processor (the oracle)."""

from __future__ import annotations

import pytest
import torch

from attention_processors import (
    AttentionGroup,
    BatchLayout,
    Control,
    StepWindow,
    StudioAttnProcessor,
    attention_control,
    decoder_self_attention,
    discover_sites,
)
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline
from tests.unet_calls import stock_output, studio_output, unet_inputs


@pytest.fixture(scope="module")
def sd15():
    return tiny_sd15_pipeline()


@pytest.fixture(scope="module")
def sdxl():
    return tiny_sdxl_pipeline()


def inputs_for(pipe, batch: int = 2, size: int = 16, width: int | None = None) -> dict:
    return unet_inputs(pipe.unet, batch, (size, width or size))


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_no_controls_equals_stock_processor(family, request):
    unet = request.getfixturevalue(family).unet
    inputs = inputs_for(request.getfixturevalue(family))
    torch.testing.assert_close(studio_output(unet, inputs), stock_output(unet, inputs), atol=1e-5, rtol=0)


def test_non_square_latent_equals_stock(sd15):
    inputs = inputs_for(sd15, batch=1, size=8, width=24)
    torch.testing.assert_close(studio_output(sd15.unet, inputs), stock_output(sd15.unet, inputs), atol=1e-5, rtol=0)


def test_processors_restored_after_exit_and_after_exception(sd15):
    unet = sd15.unet
    before = unet.attn_processors
    with attention_control(unet, [RecordingControl()]):
        assert all(isinstance(p, StudioAttnProcessor) for p in unet.attn_processors.values())
    assert unet.attn_processors == before
    with pytest.raises(RuntimeError, match="boom"):
        with attention_control(unet):
            raise RuntimeError("boom")
    after = unet.attn_processors
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)


def test_no_argument_processor_is_stock_attention(sd15):
    """diffusers' IP-Adapter loaders rebuild processors as `cls()`: that instance must stay correct."""
    unet = sd15.unet
    inputs = inputs_for(sd15)
    saved = unet.attn_processors
    unet.set_attn_processor(StudioAttnProcessor())
    try:
        with torch.no_grad():
            ours = unet(**inputs).sample
    finally:
        unet.set_attn_processor(saved)
    torch.testing.assert_close(ours, stock_output(unet, inputs), atol=1e-5, rtol=0)


def test_sites_follow_the_module_tree(sd15, sdxl):
    sites = discover_sites(sd15.unet)
    assert len(sites) == len(sd15.unet.attn_processors)
    assert [s.order for s in sites] == list(range(len(sites)))
    places = [s.place for s in sites]
    assert places == sorted(places, key=["down", "mid", "up"].index)  # execution order: down, mid, up
    assert {s.kind for s in sites} == {"self", "cross"}
    assert all(s.heads * s.head_dim == sd15.unet.get_submodule(s.name).inner_dim for s in sites)
    xl = discover_sites(sdxl.unet)
    assert len(xl) == len(sdxl.unet.attn_processors)
    assert {s.place for s in xl} == {"down", "mid", "up"}


class RecordingControl(Control):
    """Records which sites/steps it ran at and the query grid it saw; changes nothing."""

    def __init__(self, window=None, sites=None):
        self.window, self.sites, self.seen = window or StepWindow(), sites, []

    def active(self, site, state):
        return self.window.contains(state) and (self.sites is None or self.sites.matches(site))

    def edit_groups(self, call, groups):
        self.seen.append((call.site.name, call.state.index, call.spatial_size, call.query.shape[2]))
        return groups


@torch.no_grad()
def test_step_window_and_site_filter_select_exactly(sd15):
    unet = sd15.unet
    inputs = inputs_for(sd15, batch=1, size=8, width=12)
    control = RecordingControl(StepWindow(0.25, 0.75), decoder_self_attention())
    with attention_control(unet, [control]) as state:
        for i in range(8):
            state.update(index=i, total=8, timestep=999 - i, latent_size=(8, 12))
            unet(**inputs)
    steps = sorted({s for _, s, _, _ in control.seen})
    assert steps == [2, 3, 4, 5]
    expected = {s.name for s in discover_sites(unet) if s.place == "up" and s.kind == "self" and s.level < 2}
    assert {name for name, *_ in control.seen} == expected
    assert all(h * w == n for _, _, (h, w), n in control.seen)  # the site's grid matches the token count


class SplitRowsControl(Control):
    """Answers each row in its own group, twice, at half weight: a no-op that exercises the group machinery."""

    def active(self, site, state):
        return True

    def edit_groups(self, call, groups):
        out = []
        for group in groups:
            for j, row in enumerate(group.rows):
                one = AttentionGroup([row], group.key[j : j + 1], group.value[j : j + 1], None, torch.tensor(0.5))
                out += [one, one]
        return out


class ZeroKeyBiasControl(Control):
    def active(self, site, state):
        return site.kind == "self"

    def edit_groups(self, call, groups):
        return [g.with_key_bias(torch.zeros(len(g.rows), g.key.shape[2])) for g in groups]


def test_group_rewrites_that_change_nothing_equal_stock(sd15):
    unet = sd15.unet
    inputs = inputs_for(sd15)
    expected = stock_output(unet, inputs)
    torch.testing.assert_close(studio_output(unet, inputs, [SplitRowsControl()]), expected, atol=1e-5, rtol=0)
    composed = [ZeroKeyBiasControl(), SplitRowsControl(), RecordingControl()]
    torch.testing.assert_close(studio_output(unet, inputs, composed), expected, atol=1e-5, rtol=0)


class SwapKeysControl(Control):
    """Every row attends to row 0's keys/values: its output must differ from stock, proving hooks take effect."""

    def active(self, site, state):
        return site.kind == "self"

    def edit_groups(self, call, groups):
        n = call.query.shape[0]
        return [
            AttentionGroup(list(range(n)), call.key[:1].expand(n, -1, -1, -1), call.value[:1].expand(n, -1, -1, -1))
        ]


def test_controls_take_effect_and_compose_in_order(sd15):
    unet = sd15.unet
    inputs = inputs_for(sd15)
    swapped = studio_output(unet, inputs, [SwapKeysControl()])
    assert (swapped - stock_output(unet, inputs)).abs().max() > 1e-3
    torch.testing.assert_close(swapped[0], stock_output(unet, inputs)[0], atol=1e-5, rtol=0)  # row 0 unchanged
    # Applied after the swap, the no-op split keeps the swapped result.
    torch.testing.assert_close(
        studio_output(unet, inputs, [SwapKeysControl(), SplitRowsControl()]), swapped, atol=1e-5, rtol=0
    )


def test_uncovered_rows_are_an_error(sd15):
    class DropRows(Control):
        def active(self, site, state):
            return True

        def edit_groups(self, call, groups):
            return [AttentionGroup([0], call.key[:1], call.value[:1])]

    with pytest.raises(ValueError, match="unanswered"):
        studio_output(sd15.unet, inputs_for(sd15), [DropRows()])


def test_layout_names_rows_by_role():
    layout = BatchLayout.with_cfg(["source", "target", "target"])
    assert layout.size == 6 and layout.has_cfg
    assert layout.indices(role="target", half="cond") == [4, 5]
    assert layout.index("source", "uncond") == 0
    assert layout.index("target", "cond", item=1) == 5
    assert layout.count("target") == 2
    with pytest.raises(ValueError, match="reference"):
        layout.require("source", "reference")
    refs = BatchLayout.without_cfg(["reference", "reference"])
    assert (BatchLayout.with_cfg(["target"]) + refs).indices(role="reference") == [2, 3]


def test_step_window_is_a_fraction_of_any_schedule():
    from attention_processors import StepState

    window = StepWindow(0.08, 1.0)  # MasaCtrl: from step 4 of 50
    state = StepState()
    for total, first in [(50, 4), (25, 2), (10, 1)]:
        active = []
        for i in range(total):
            state.update(index=i, total=total, timestep=0)
            active.append(window.contains(state))
        assert active.index(True) == first and all(active[first:])
    with pytest.raises(ValueError):
        StepWindow(0.5, 0.2)


@torch.no_grad()
def test_peft_lora_changes_output_identically_under_studio_and_stock(tmp_path):
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    donor = tiny_sd15_pipeline()
    donor.unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    )
    StableDiffusionPipeline.save_lora_weights(tmp_path, unet_lora_layers=get_peft_model_state_dict(donor.unet))

    pipe = tiny_sd15_pipeline()
    inputs = inputs_for(pipe)
    base_stock = stock_output(pipe.unet, inputs)
    base_ours = studio_output(pipe.unet, inputs)
    pipe.load_lora_weights(tmp_path)
    lora_stock = stock_output(pipe.unet, inputs)
    lora_ours = studio_output(pipe.unet, inputs)
    assert (lora_stock - base_stock).abs().max() > 1e-3  # the LoRA really acts
    torch.testing.assert_close(lora_ours - base_ours, lora_stock - base_stock, atol=1e-5, rtol=0)
    torch.testing.assert_close(lora_ours, lora_stock, atol=1e-5, rtol=0)
