"""Model families plug into the studio through entry points (studio/providers.py), as toyworld does.

A fake family is installed the way a real one is: a `*.dist-info` folder with `entry_points.txt` on
`sys.path`, which `importlib.metadata` reads like any installed distribution. Nothing is patched.
"""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.errors import InputError, ProviderError
from studio.masks import MaskError
from studio.model_cache import ModelCache
from studio.model_refs import ModelKind, resolve_model_ref
from studio.providers import MASK_GROUP, MODEL_GROUP, declared_entry_points, provided_mask
from studio.tasks.inputs import auto_mask

ROOT = Path(__file__).resolve().parents[1]


def install_family(site: Path, monkeypatch: pytest.MonkeyPatch, source: str, entry_points: str) -> str:
    """Write a module and a distribution declaring `entry_points` under `site`, and put `site` on sys.path."""
    module = f"fake_family_{uuid.uuid4().hex[:8]}"
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points).replace("MODULE", module))
    monkeypatch.syspath_prepend(str(site))
    return module


@pytest.fixture
def fake_family(tmp_path, monkeypatch, tiny_sd15_dir):
    """A family providing the model 'fake-model' (the tiny SD1.5 folder) and masks for it."""
    install_family(tmp_path, monkeypatch, f"""
        import numpy as np

        def folder():
            return {str(tiny_sd15_dir)!r}

        def mask(image, *, model, backbone):
            if model != "fake-model":
                return None
            out = np.zeros((image.height, image.width), dtype=bool)
            if image.getpixel((0, 0)) != (0, 0, 0):  # a black image has "nothing to mask"
                out[: image.height // 2] = True
            return out
        """, """
        [diffusion_studio.models]
        fake-model = MODULE:folder

        [diffusion_studio.masks]
        fake-masks = MODULE:mask
        """)


def test_a_provided_name_resolves_to_its_folder_and_loads(fake_family, tiny_sd15_dir):
    ref = resolve_model_ref("fake-model")
    assert (ref.kind, ref.location) == (ModelKind.PROVIDED, str(tiny_sd15_dir.resolve()))
    pipe = ModelCache().get("fake-model")
    assert type(pipe).__name__ == "StableDiffusionPipeline" and type(pipe.scheduler).__name__ == "DDIMScheduler"


def test_a_provided_name_without_weights_is_one_clear_line(tmp_path, monkeypatch):
    install_family(tmp_path, monkeypatch, f"""
        def folder():
            return {str(tmp_path / "empty")!r}
        """, "[diffusion_studio.models]\nhollow-model = MODULE:folder\n")
    with pytest.raises(InputError) as info:
        resolve_model_ref("hollow-model")
    index = tmp_path / "empty" / "model_index.json"
    assert str(info.value) == f"the model 'hollow-model' is missing its weights ({index} not found)"


def test_a_broken_provider_is_one_clear_line(tmp_path, monkeypatch):
    install_family(tmp_path, monkeypatch, "", "[diffusion_studio.models]\nbroken-model = no_such_module_xyz:folder\n")
    with pytest.raises(ProviderError, match="^the diffusion_studio.models provider 'broken-model' .* cannot be load"):
        resolve_model_ref("broken-model")


def test_the_automatic_mask_path_asks_the_providers(fake_family):
    image = Image.new("RGB", (8, 6), (200, 10, 10))
    mask = auto_mask(image, backbone=None, model="fake-model", caption="", concept=None, name="image")
    expected = np.zeros((6, 8), dtype=np.float32)
    expected[:3] = 1.0
    assert mask.dtype.is_floating_point and np.array_equal(mask.numpy(), expected)
    assert provided_mask(image, model="another-model", backbone=None) is None


def test_an_empty_provided_mask_is_a_clear_error(fake_family):
    black = Image.new("RGB", (8, 6), (0, 0, 0))
    with pytest.raises(MaskError, match="^image: no object found to mask automatically; give a mask$"):
        auto_mask(black, backbone=None, model="fake-model", caption="", concept=None, name="image")


def test_no_mask_provider_and_no_concept_is_one_clear_line(fake_family):
    image = Image.new("RGB", (8, 6), (200, 10, 10))
    with pytest.raises(InputError) as info:
        auto_mask(image, backbone=None, model="some/hub-model", caption="", concept=None, name="reference")
    assert str(info.value) == (
        "reference: give a mask, or a concept word whose attention can make one"
        " (no automatic-mask provider serves the model 'some/hub-model')"
    )


def test_toyworld_masks_are_its_detectors_largest_object():
    from toyworld.detector import detect
    from toyworld.world import Background, SceneSpec, make_object, render

    scene = SceneSpec((make_object("star", "red", "plain", "large", "on the left"),), Background("plain", "gray"))
    image = Image.fromarray(render(scene).image)
    mask = auto_mask(image, backbone=None, model="toyworld", caption="", concept=None, name="image")
    assert np.array_equal(mask.numpy(), detect(image).objects[0].mask.astype(np.float32))
    assert provided_mask(image, model="not-toyworld", backbone=None) is None


def test_the_projects_pyproject_declares_toyworld_in_both_groups():
    for group, value in ((MODEL_GROUP, "toyworld.providers:model_folder"),
                         (MASK_GROUP, "toyworld.providers:foreground_mask")):
        assert declared_entry_points(group, ROOT)["toyworld"].value == value


def test_a_checkout_pyproject_is_read_only_for_this_project(tmp_path):
    def write(name: str) -> None:
        (tmp_path / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\n[project.entry-points."{MODEL_GROUP}"]\nextra = "somewhere:folder"\n'
        )

    write("diffusion-studio")
    assert declared_entry_points(MODEL_GROUP, tmp_path)["extra"].value == "somewhere:folder"
    write("another-project")
    assert "extra" not in declared_entry_points(MODEL_GROUP, tmp_path)
