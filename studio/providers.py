"""Model families that plug into the studio: named models and automatic masks, found through entry points.

Why: the studio core must not know any one model family. A family (the bundled toyworld model is the
first) declares, in its distribution's metadata, Python entry points in two groups:

- `diffusion_studio.models`: the entry point's name is a model reference (`--model NAME`); its object is
  a `ModelProvider`, called with no arguments, that returns the local diffusers folder of that model;
- `diffusion_studio.masks`: its object is a `MaskProvider`, asked for a foreground mask of an image
  when a method job gives none; it answers None for models it does not know.

Entry points are read from the installed metadata (a normal or an editable install). A source checkout
run without reinstalling (`python -m studio.cli` from the repository) also reads the same declarations
from the `pyproject.toml` beside the package, so a newly declared provider works before the next
`pip install -e .`; where both declare a name, the checkout's declaration wins because its code is the
code that runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from studio.errors import ProviderError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from pipelines.backbone import Backbone

MODEL_GROUP = "diffusion_studio.models"
MASK_GROUP = "diffusion_studio.masks"
DISTRIBUTION = "diffusion-studio"  # the project name a checkout's pyproject.toml must carry to be read


class ModelProvider(Protocol):
    """Returns the local diffusers folder of the model its entry point names (it may not exist yet)."""

    def __call__(self) -> str | os.PathLike[str]: ...


class MaskProvider(Protocol):
    """A foreground mask [H, W] (bool or 0..1) of `image` for `model`, or None when `model` is not its own.

    An all-zero mask means "this model is mine, but the image shows nothing to mask"; the caller turns
    that into a clear error rather than running a method on an empty region.
    """

    def __call__(self, image: Image.Image, *, model: str, backbone: Backbone) -> np.ndarray | None: ...


def declared_entry_points(group: str, checkout: Path | None = None) -> dict[str, EntryPoint]:
    """The entry points of `group` by name, in name order: installed metadata, then a checkout's pyproject.toml."""
    found = {ep.name: ep for ep in entry_points(group=group)}
    found.update(_checkout_entry_points(group, checkout or Path(__file__).resolve().parents[1]))
    return dict(sorted(found.items()))


def model_provider(name: str) -> ModelProvider | None:
    """The provider of the model reference `name`, or None if no installed family declares that name."""
    entry = declared_entry_points(MODEL_GROUP).get(name)
    if entry is None:
        return None
    provider: ModelProvider = _load(entry)
    return provider


def provided_mask(image: Image.Image, *, model: str, backbone: Backbone) -> torch.Tensor | None:
    """The first mask a `diffusion_studio.masks` provider gives for `model` ([H, W] float32), else None."""
    import numpy as np
    import torch

    for entry in declared_entry_points(MASK_GROUP).values():
        provider: MaskProvider = _load(entry)
        mask = provider(image, model=model, backbone=backbone)
        if mask is not None:
            return torch.from_numpy(np.asarray(mask, dtype=np.float32))  # [H, W]
    return None


def _load(entry: EntryPoint) -> Callable:
    try:
        return entry.load()
    except Exception as exc:  # noqa: BLE001 - any import failure means the same thing to the user
        raise ProviderError(
            f"the {entry.group} provider {entry.name!r} ({entry.value}) cannot be loaded:"
            f" {type(exc).__name__}: {exc}"
        ) from exc


def _checkout_entry_points(group: str, root: Path) -> dict[str, EntryPoint]:
    """`[project.entry-points.<group>]` of the checkout's pyproject.toml; empty when installed as a wheel."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: an installed package's metadata is all there is
        return {}
    with pyproject.open("rb") as stream:
        project = tomllib.load(stream).get("project", {})
    if project.get("name") != DISTRIBUTION:
        return {}
    table = project.get("entry-points", {}).get(group, {})
    return {name: EntryPoint(name, value, group) for name, value in table.items()}
