"""Package exports imported on first use (PEP 562), shared by the packages whose `__init__` must stay cheap.

Why: `attention_processors` and `pipelines` export names from modules that import torch, while their torch-free
`settings` modules are read when the CLI and the job schema are built. Importing a name from its module only
when it is first used keeps `import pipelines.settings` (and `studio --help`) from loading torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of a package (`package` is its `globals()`), for names -> their modules."""

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        package[name] = value  # later lookups skip this function
        return value

    def dir_() -> list[str]:
        return sorted([*package, *exports])

    return getattr_, dir_
