"""Each name a package exports is the thing it names, whatever was imported before.

Why: `pipelines` and `attention_processors` export names lazily (PEP 562). Python binds a submodule to
its package's attribute of the same name when the submodule is imported, so a function named like its
module (`pipelines.text_to_image` once lived in `pipelines/text_to_image.py`) became the module for every later
`from pipelines import generate`, depending on which test or user code had imported it first.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest


@pytest.mark.parametrize("package_name", ["pipelines", "attention_processors", "kernels"])
def test_exports_are_not_shadowed_by_submodules(package_name):
    package = importlib.import_module(package_name)
    for entry in pkgutil.iter_modules(package.__path__):  # import every submodule first
        try:
            importlib.import_module(f"{package_name}.{entry.name}")
        except ModuleNotFoundError as exc:  # an optional backend (triton) this machine lacks
            assert exc.name in {"triton", "xformers"}, exc
    for name in getattr(package, "__all__", []):
        value = getattr(package, name)
        assert not isinstance(value, types.ModuleType), f"{package_name}.{name} is a module, not the export"
    from pipelines import generate, img2img, invert, reconstruct

    assert all(callable(f) and not isinstance(f, types.ModuleType) for f in (generate, img2img, invert, reconstruct))
