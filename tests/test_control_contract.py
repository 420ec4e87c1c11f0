"""The control contract: every attention control, checked for the same properties on SD1.x- and
SDXL-shaped tiny UNets (one whole UNet forward each, at step 5 of 10).

How a new control joins: add one `Entry` to `ENTRIES` below. The entry says how to build the control
switched on and every way the method defines it as switched off (an empty step window, no sites, no
references, ...), the batch layout it runs in, which row sets of that batch are independent items, and
which toyworld test measures its behaviour (or why none can). Every test here is parametrised over the
entries, so the new control is then checked for:

- invariance: switched off, the whole UNet equals diffusers' stock `AttnProcessor2_0` within 1e-5;
- liveness: switched on, it changes the output (an observer instead keeps it stock and records something),
  so that the other properties are not passed by a control that does nothing;
- restore: the original processor objects are back after a normal exit and after an exception;
- batch equals single: each item of the batch run alone gives the batched rows within 1e-5;
- fused equals oracle: through the fused kernels (`auto`) it equals the einsum reference backend.

`test_every_control_class_has_an_entry` fails until a new `Control` in attention_processors/ has an entry.
The behaviour tests themselves are slow and live elsewhere; they are named here, not run.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor

import attention_processors
from attention_processors import BatchLayout, Control, Row, SiteFilter, StepWindow, attention_control
from attention_processors.attention_maps import CrossAttentionMaps
from attention_processors.block_maps import BlockTokenMaps
from attention_processors.ip_adapter import IPAdapter
from attention_processors.multi_reference import MultiReferenceSelfAttention
from attention_processors.regional import RegionalCrossAttention, TextRegion
from attention_processors.mutual_self_attention import MaskPair, MutualSelfAttention
from attention_processors.uniform_attention import UniformCrossAttention
from attention_processors.visctrl import FeatureGradualSampling, visctrl_control
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline
from tests.ip_adapter_files import random_image_branches
from tests.unet_calls import select_rows, stock_output, studio_output, unet_inputs

FAMILIES = ("sd15", "sdxl")
LATENT = (12, 16)  # non-square, so a transposed token grid would show
STEP, TOTAL = 5, 10  # inside every entry's step window (MasaCtrl from 8 %, VisCtrl from 20 %)
TESTS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Scene:
    """What an entry may read to build its control: the model family and the batch layout of the run."""

    family: str
    layout: BatchLayout


Build = Callable[[Scene], Control]


@dataclass(frozen=True)
class Entry:
    """One control in the contract: how to build it on and off, the batch it runs in, and its behaviour test."""

    name: str
    build: Build  # the control switched on
    switched_off: tuple[Build, ...]  # every way the method defines as off
    layout: BatchLayout  # the batched run
    items: tuple[tuple[int, ...], ...]  # row sets of `layout` that are independent items (shared rows included)
    behaviour_test: str | None  # "file::function" under tests/ that measures the method on toyworld
    no_behaviour_test_because: str = ""  # required when behaviour_test is None
    observer: bool = False  # observers never change the output; `readout` says what they recorded
    readout: Callable[[Control], dict[int, Tensor]] | None = None  # recorded result per batch row


def blob(top: int, left: int, height: int, width: int) -> Tensor:
    """A rectangular foreground mask [h, w] at latent resolution (controls resample it per site)."""
    mask = torch.zeros(LATENT)
    mask[top : top + height, left : left + width] = 1
    return mask


NEVER = StepWindow(1.0, 1.0)  # no step of any schedule
NOWHERE = SiteFilter(names=())  # no site of any UNet
MUTUAL_TOYWORLD = (
    "test_appearance_toyworld.py::"
    "test_mutual_self_attention_keeps_the_sources_unsaid_pattern_at_the_target_prompts_position"
)
UNIFORM_TOYWORLD = (
    "test_uniform_toyworld.py::"
    "test_uniform_inversion_reconstructs_toyworld_as_well_as_ddim_and_far_better_than_the_text_branch"
)
VISCTRL_TOYWORLD = (
    "test_appearance_toyworld.py::"
    "test_visctrl_gives_the_target_object_the_references_colour_and_pattern_and_keeps_its_shape"
)
FREECUSTOM_TOYWORLD = (
    "test_appearance_toyworld.py::test_freecustom_composes_both_references_with_their_unsaid_patterns"
)

# Rows: uncond [source, target 0, target 1], cond [source, target 0, target 1]; one source drives both.
MUTUAL_LAYOUT = BatchLayout.with_cfg(["source", "target", "target"])
MUTUAL_ITEMS = ((0, 1, 3, 4), (0, 2, 3, 5))
MASKS = MaskPair(source=blob(2, 3, 6, 7), target=blob(4, 6, 6, 8))
# Rows: uncond [source, target], cond [source, target], cond [uniform 0, uniform 1] (UAM editing's batch).
UNIFORM_LAYOUT = BatchLayout.with_cfg(["source", "target"]) + BatchLayout.without_cfg(["uniform", "uniform"])
# Rows: uncond [t0, t1], cond [t0, t1], cond [reference 0, reference 1] (style fidelity 1: cond only).
MRSA_LAYOUT = BatchLayout.with_cfg(["target", "target"]) + BatchLayout.without_cfg(["reference", "reference"])
# Rows: uncond [t0, t1, r0, r1], cond [t0, t1, r0, r1] (style fidelity < 1: references in both halves).
MRSA_BOTH_HALVES_LAYOUT = BatchLayout.with_cfg(["target", "target", "reference", "reference"])
REFERENCE_MASKS = [blob(0, 0, 6, 8), blob(5, 8, 7, 8)]
# Rows: uncond [reference, view 0, view 1, view 2], cond [the same].
VIEWS_LAYOUT = BatchLayout.with_cfg(["reference", "target", "target", "target"])


REGIONAL_TOYWORLD = "test_regional_toyworld.py::test_regional_binding_places_every_object_with_all_its_attributes"


def text_regions(family: str) -> list[TextRegion]:
    """Two overlapping regions and one small one, each with random prompt embeddings of the family's width."""
    g = torch.Generator().manual_seed(7)
    dim = {"sd15": 32, "sdxl": 64}[family]  # the tiny UNets' cross_attention_dim
    masks = [blob(0, 0, 8, 10), blob(4, 6, 8, 10), blob(10, 14, 1, 1)]
    return [TextRegion(torch.randn(77, dim, generator=g), m) for m in masks]


def cond_rows(layout: BatchLayout) -> dict[int, list[int]]:
    """Text positions whose maps an observer records: tokens 1-2 of every conditional row."""
    return {row: [1, 2] for row in layout.indices(half="cond")}


def _maps_of(control: Control) -> dict[int, Tensor]:
    assert isinstance(control, CrossAttentionMaps)
    return control.maps()


def _block_masks_of(control: Control) -> dict[int, Tensor]:
    """LAG's binary masks (first block) keyed by the conditional row of their stream."""
    assert isinstance(control, BlockTokenMaps)
    layout = control.layout
    assert isinstance(layout, BatchLayout)
    return {layout.index("target", "cond", item): mask for item, mask in control.masks().items()}


ENTRIES: tuple[Entry, ...] = (
    Entry(
        name="masactrl",
        build=lambda s: MutualSelfAttention(),
        switched_off=(lambda s: MutualSelfAttention(steps=NEVER), lambda s: MutualSelfAttention(sites=NOWHERE)),
        layout=MUTUAL_LAYOUT,
        items=MUTUAL_ITEMS,
        behaviour_test=MUTUAL_TOYWORLD,
    ),
    Entry(
        name="masactrl_masked",
        build=lambda s: MutualSelfAttention(masks=MASKS),
        switched_off=(
            lambda s: MutualSelfAttention(masks=MASKS, steps=NEVER),
            lambda s: MutualSelfAttention(masks=MASKS, sites=NOWHERE),
        ),
        layout=MUTUAL_LAYOUT,
        items=MUTUAL_ITEMS,
        behaviour_test=None,
        no_behaviour_test_because="no toyworld measure of the masked variant exists yet (the toyworld test "
        "runs the unmasked control)",
    ),
    Entry(
        name="uniform_cross_attention",
        build=lambda s: UniformCrossAttention(roles=("uniform",)),
        switched_off=(
            lambda s: UniformCrossAttention(roles=()),
            lambda s: UniformCrossAttention(roles=("uniform",), steps=NEVER),
            lambda s: UniformCrossAttention(roles=("uniform",), sites=NOWHERE),
        ),
        layout=UNIFORM_LAYOUT,
        items=((0, 1, 2, 3), (4,), (5,)),
        behaviour_test=UNIFORM_TOYWORLD,
    ),
    Entry(
        name="uniform_cross_attention_every_row",
        build=lambda s: UniformCrossAttention(),
        switched_off=(lambda s: UniformCrossAttention(steps=NEVER),),
        layout=BatchLayout.without_cfg(["source", "source"]),
        items=((0,), (1,)),
        behaviour_test=UNIFORM_TOYWORLD,
    ),
    Entry(
        name="freecustom_mrsa",
        build=lambda s: MultiReferenceSelfAttention(masks=REFERENCE_MASKS, weights=[3.0, 2.0]),
        switched_off=(
            lambda s: MultiReferenceSelfAttention(masks=[]),
            lambda s: MultiReferenceSelfAttention(masks=REFERENCE_MASKS, steps=NEVER),
            lambda s: MultiReferenceSelfAttention(masks=REFERENCE_MASKS, sites=NOWHERE),
        ),
        layout=MRSA_LAYOUT,
        items=((0, 2, 4, 5), (1, 3, 4, 5)),
        behaviour_test=FREECUSTOM_TOYWORLD,
    ),
    Entry(
        name="freecustom_mrsa_style_fidelity",
        build=lambda s: MultiReferenceSelfAttention(masks=REFERENCE_MASKS, style_fidelity=0.4),
        switched_off=(
            lambda s: MultiReferenceSelfAttention(masks=[], style_fidelity=0.4),
            lambda s: MultiReferenceSelfAttention(masks=REFERENCE_MASKS, style_fidelity=0.4, steps=NEVER),
        ),
        layout=MRSA_BOTH_HALVES_LAYOUT,
        items=((0, 2, 3, 4, 6, 7), (1, 2, 3, 5, 6, 7)),
        behaviour_test=None,
        no_behaviour_test_because="style fidelity below 1 is not FreeCustom's default; the toyworld test runs the "
        "default (the unconditional half plain), and sf = 0 measured lower on toyworld (README)",
    ),
    Entry(
        name="visctrl",
        build=lambda s: visctrl_control(),
        switched_off=(lambda s: visctrl_control(start=1.0),),
        layout=BatchLayout.with_cfg(["reference", "target", "target"]),
        items=((0, 1, 3, 4), (0, 2, 3, 5)),
        behaviour_test=VISCTRL_TOYWORLD,  # one view per case: the injection without sampled earlier views
    ),
    Entry(
        name="visctrl_feature_gradual_sampling",
        build=lambda s: FeatureGradualSampling(alpha=0.5, sample_fraction=0.5, seed=1),
        switched_off=(lambda s: FeatureGradualSampling(alpha=0.5, sample_fraction=0.5, seed=1, steps=NEVER),),
        layout=VIEWS_LAYOUT,
        # Views are one item, edited in order: view k sees views < k only, so every prefix is an item.
        items=((0, 1, 4, 5), (0, 1, 2, 4, 5, 6)),
        behaviour_test=None,
        no_behaviour_test_because="cross-view agreement is measured by bench/appearance_quality.py (its FGS table), "
        "not gated by a test; the toyworld VisCtrl test edits one view, where sampling never acts",
    ),
    Entry(
        name="cross_attention_maps",
        build=lambda s: CrossAttentionMaps(token_indices=cond_rows(s.layout), size=LATENT),
        switched_off=(lambda s: CrossAttentionMaps(token_indices=cond_rows(s.layout), size=LATENT, steps=NEVER),),
        layout=BatchLayout.with_cfg(["target", "target"]),
        items=((0, 2), (1, 3)),
        behaviour_test=None,
        no_behaviour_test_because="automatic concept masks have no toyworld measure yet; "
        "test_attention_maps.py checks the maps against an explicit softmax",
        observer=True,
        readout=_maps_of,
    ),
    Entry(
        name="lag_block_masks",
        build=lambda s: BlockTokenMaps(token_indices={-1: [1, 2]}, blocks=None),
        switched_off=(lambda s: BlockTokenMaps(token_indices={-1: [1, 2]}, blocks=frozenset()),),
        layout=BatchLayout.with_cfg(["target", "target"]),
        items=((0, 2), (1, 3)),
        behaviour_test=None,
        no_behaviour_test_because="LAG's effect is measured by bench/tuning_fidelity.py (background change); "
        "test_tuning_residuals.py checks the gate at masks of ones and zeros",
        observer=True,
        readout=_block_masks_of,
    ),
    Entry(
        name="ip_adapter",
        build=lambda s: IPAdapter(random_image_branches(s.family, mask=blob(0, 0, 12, 8))),
        switched_off=(
            lambda s: IPAdapter([]),
            lambda s: IPAdapter(random_image_branches(s.family, scale=0.0)),
            lambda s: IPAdapter(random_image_branches(s.family), steps=NEVER),
            lambda s: IPAdapter(random_image_branches(s.family), sites=NOWHERE),
        ),
        layout=BatchLayout.with_cfg(["target", "target"]),
        items=((0, 2), (1, 3)),
        behaviour_test=None,
        no_behaviour_test_because="the toyworld IP-Adapter is not trained yet; tests/test_ip_adapter.py holds "
        "the control to diffusers' own IP-Adapter",
    ),
)

ENTRIES += (
    Entry(
        name="regional",
        build=lambda s: RegionalCrossAttention(text_regions(s.family), delta=0.7),
        switched_off=(
            lambda s: RegionalCrossAttention([]),
            lambda s: RegionalCrossAttention(text_regions(s.family), delta=0.0),
            lambda s: RegionalCrossAttention(text_regions(s.family), steps=NEVER),
            lambda s: RegionalCrossAttention(text_regions(s.family), sites=NOWHERE),
        ),
        layout=BatchLayout.with_cfg(["target", "target"]),
        items=((0, 2), (1, 3)),
        behaviour_test=REGIONAL_TOYWORLD,
    ),
)

CASES = [pytest.param(entry, family, id=f"{entry.name}-{family}") for entry in ENTRIES for family in FAMILIES]


@pytest.fixture(scope="module")
def unets() -> dict[str, torch.nn.Module]:
    return {"sd15": tiny_sd15_pipeline().unet, "sdxl": tiny_sdxl_pipeline().unet}


def sub_layout(layout: BatchLayout, rows: tuple[int, ...]) -> BatchLayout:
    """The layout of `rows` run alone: roles and halves kept, items renumbered from 0 in batch order."""
    counts: dict[tuple[str, str], int] = {}
    entries = []
    for r in rows:
        row = layout.entries[r]
        key = (row.role, row.half)
        entries.append(Row(row.role, counts.get(key, 0), row.half))
        counts[key] = counts.get(key, 0) + 1
    return BatchLayout(tuple(entries))


def run(unet, family: str, build: Build, layout: BatchLayout, inputs: dict, backend: str = "auto"):
    """(UNet output, the control that ran) for one forward of `layout` at step STEP of TOTAL."""
    control = build(Scene(family, layout))
    out = studio_output(unet, inputs, [control], layout, step=STEP, total=TOTAL, backend=backend)
    return out, control


def close(got: Tensor, want: Tensor, what: str, atol: float = 1e-5) -> None:
    torch.testing.assert_close(got, want, atol=atol, rtol=0, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize(("entry", "family"), CASES)
def test_switched_off_equals_the_stock_processor(entry: Entry, family: str, unets):
    unet = unets[family]
    inputs = unet_inputs(unet, entry.layout.size, LATENT)
    expected = stock_output(unet, inputs)
    for k, off in enumerate(entry.switched_off):
        got, _ = run(unet, family, off, entry.layout, inputs)
        close(got, expected, f"{entry.name}, switched-off variant {k}")


@pytest.mark.parametrize(("entry", "family"), CASES)
def test_switched_on_acts(entry: Entry, family: str, unets):
    unet = unets[family]
    inputs = unet_inputs(unet, entry.layout.size, LATENT)
    got, control = run(unet, family, entry.build, entry.layout, inputs)
    expected = stock_output(unet, inputs)
    if entry.observer:
        close(got, expected, f"observer {entry.name} changed the output")
        assert entry.readout is not None and entry.readout(control), f"{entry.name} recorded nothing"
    else:
        assert (got - expected).abs().max() > 1e-3, f"{entry.name} switched on changes nothing here"


@pytest.mark.parametrize(("entry", "family"), CASES)
def test_processors_are_restored_after_exit_and_after_an_exception(entry: Entry, family: str, unets):
    unet = unets[family]
    before = unet.attn_processors
    inputs = unet_inputs(unet, entry.layout.size, LATENT)

    def unchanged() -> bool:
        after = unet.attn_processors
        return after.keys() == before.keys() and all(after[k] is before[k] for k in before)

    with attention_control(unet, [entry.build(Scene(family, entry.layout))]) as state:
        state.update(index=STEP, total=TOTAL, timestep=500, layout=entry.layout, latent_size=LATENT)
        with torch.no_grad():
            unet(**inputs)
    assert unchanged()
    with pytest.raises(RuntimeError, match="cancelled mid-run"):
        with attention_control(unet, [entry.build(Scene(family, entry.layout))]) as state:
            state.update(index=STEP, total=TOTAL, timestep=500, layout=entry.layout, latent_size=LATENT)
            with torch.no_grad():
                unet(**inputs)
            raise RuntimeError("cancelled mid-run")
    assert unchanged()


@pytest.mark.parametrize(("entry", "family"), CASES)
def test_batch_equals_each_item_alone(entry: Entry, family: str, unets):
    unet = unets[family]
    inputs = unet_inputs(unet, entry.layout.size, LATENT)
    batched, control = run(unet, family, entry.build, entry.layout, inputs)
    for rows in entry.items:
        single, alone = run(unet, family, entry.build, sub_layout(entry.layout, rows), select_rows(inputs, rows))
        close(batched[list(rows)], single, f"{entry.name}, rows {rows} alone")
        if entry.readout is not None:
            together, by_itself = entry.readout(control), entry.readout(alone)
            assert set(by_itself) == {j for j, r in enumerate(rows) if r in together}
            for j, r in enumerate(rows):
                if j in by_itself:
                    close(together[r], by_itself[j], f"{entry.name} record of row {r} alone")


@pytest.mark.parametrize(("entry", "family"), CASES)
def test_fused_kernels_equal_the_einsum_oracle(entry: Entry, family: str, unets):
    """`auto` is the path the studio runs; tests/test_kernels.py holds every other backend to the same oracle."""
    unet = unets[family]
    inputs = unet_inputs(unet, entry.layout.size, LATENT)
    fused, fused_control = run(unet, family, entry.build, entry.layout, inputs, backend="auto")
    oracle, oracle_control = run(unet, family, entry.build, entry.layout, inputs, backend="einsum")
    close(fused, oracle, f"{entry.name}, fused vs einsum")
    if entry.readout is not None:
        got, want = entry.readout(fused_control), entry.readout(oracle_control)
        assert got.keys() == want.keys()
        for row in want:
            close(got[row], want[row], f"{entry.name} record of row {row}, fused vs einsum")


# ---- the registry itself ----------------------------------------------------------------------------------


def test_entries_are_well_formed():
    assert len({entry.name for entry in ENTRIES}) == len(ENTRIES)
    for entry in ENTRIES:
        assert entry.switched_off, f"{entry.name} names no switched-off variant"
        assert entry.items and all(set(rows) <= set(range(entry.layout.size)) for rows in entry.items)
        assert (entry.readout is not None) == entry.observer, f"{entry.name}: an observer needs a readout"


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_entry_names_an_existing_behaviour_test_or_says_why_none(entry: Entry):
    if entry.behaviour_test is None:
        assert entry.no_behaviour_test_because.strip(), f"{entry.name}: name a behaviour test or say why none"
        return
    file, _, function = entry.behaviour_test.partition("::")
    tree = ast.parse((TESTS_DIR / file).read_text())
    tests = {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    assert function in tests, f"{entry.name}: {entry.behaviour_test} is not a test function"


def control_classes() -> set[type]:
    """Every concrete `Control` subclass defined in the attention_processors package."""
    found = set()
    for info in pkgutil.iter_modules(attention_processors.__path__):
        module = importlib.import_module(f"attention_processors.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Control) and not cls.is_abstract and cls.__module__ == module.__name__:
                found.add(cls)
    return found


def test_every_control_class_has_an_entry():
    covered = {type(entry.build(Scene(FAMILIES[0], entry.layout))) for entry in ENTRIES}
    missing = sorted(cls.__qualname__ for cls in control_classes() - covered)
    assert not missing, f"controls without a contract entry: {missing}"


# ---- a control must say where it acts ---------------------------------------------------------------------


def test_a_control_that_does_not_define_active_fails_at_class_creation():
    with pytest.raises(TypeError, match="does not override `active"):

        class OutputOnly(Control):
            def edit_output(self, call, output):
                return output * 2

    with pytest.raises(TypeError, match="does not override `active"):

        @dataclass
        class DataclassWithoutActive(Control):
            weight: float = 1.0


def test_abstract_bases_opt_out_explicitly_and_are_refused_at_install(unets):
    class HelperBase(Control, abstract=True):
        def edit_output(self, call, output):
            return output

    class Concrete(HelperBase):
        def active(self, site, state):
            return False

    class StillAbstract(HelperBase, abstract=True):
        pass

    assert HelperBase.is_abstract and not Concrete.is_abstract
    with pytest.raises(TypeError, match="does not override `active"):

        class Forgot(HelperBase):
            pass

    unet = unets["sd15"]
    for abstract in (Control(), HelperBase(), StillAbstract()):
        with pytest.raises(TypeError, match="abstract control"):
            with attention_control(unet, [abstract]):
                pass
    with attention_control(unet, [Concrete()]):
        pass
