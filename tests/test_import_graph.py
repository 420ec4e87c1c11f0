"""The import structure the design asks for, read from the source with `ast` (nothing is imported).

`ui -> studio -> pipelines -> attention_processors -> kernels`, with `toyworld` beside `studio`: the
studio reaches toyworld only through entry points (studio/providers.py), never by an import, and
toyworld uses `pipelines` and below. Every import statement counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ui", "studio", "pipelines", "attention_processors", "kernels", "toyworld")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports; relative imports are resolved against its package."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    if path.name == "__init__.py":
        package = path.relative_to(ROOT).parts[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names.add(".".join((*base, node.module) if node.module else base))
            else:
                names.add(node.module or "")
    return names


def package_imports() -> dict[str, dict[str, set[str]]]:
    """{package: {imported top-level package: files that import it}} among PACKAGES."""
    graph: dict[str, dict[str, set[str]]] = {name: {} for name in PACKAGES}
    for name in PACKAGES:
        for path in sorted((ROOT / name).rglob("*.py")):
            for module in imported_modules(path):
                top = module.split(".")[0]
                if top in PACKAGES and top != name:
                    graph[name].setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return graph


def test_relative_imports_resolve_like_python():
    path = ROOT / "toyworld" / "metrics" / "attributes.py"
    assert {"toyworld.captions", "toyworld.detector"} <= imported_modules(path)
    assert "toyworld.detector" in imported_modules(ROOT / "toyworld" / "providers.py")


def test_no_studio_module_imports_toyworld():
    assert package_imports()["studio"].get("toyworld", set()) == set()


@pytest.mark.parametrize("upper", ["studio", "ui"])
def test_toyworld_uses_only_pipelines_and_below(upper):
    assert package_imports()["toyworld"].get(upper, set()) == set()


def test_no_cycle_between_top_level_packages():
    graph = {name: set(targets) for name, targets in package_imports().items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            cycle = " -> ".join(path[path.index(name):] + (name,))
            raise AssertionError(f"import cycle between packages: {cycle}")
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, path + (name,))
        done.add(name)

    for name in PACKAGES:
        visit(name, ())
