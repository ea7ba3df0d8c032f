"""Each part installs what it runs: no part depends on the command line, and every library a
part's code imports (following ``sextant`` imports from its entry point) is among the
distributions its own package pulls in. So the collector and the notifier carry no embedded
ClickHouse, and nothing needs the CLI to run."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PARTS = ("collector", "processor", "sink", "gateway", "notifier")


def _pyproject(member: str) -> dict[str, object]:
    path = REPO / ("schemas" if member == "schemas" else f"services/{member}") / "pyproject.toml"
    found: dict[str, object] = tomllib.loads(path.read_text())["project"]
    return found


@pytest.mark.parametrize("part", PARTS)
def test_no_part_depends_on_the_command_line(part: str) -> None:
    project = _pyproject(part)
    requirements = [
        Requirement(r)
        for r in [
            *project.get("dependencies", []),  # type: ignore[misc]
            *(r for rs in project.get("optional-dependencies", {}).values() for r in rs),  # type: ignore[attr-defined]
        ]
    ]
    assert "sextant-cli" not in {canonicalize_name(r.name) for r in requirements}
    scripts = project.get("scripts", {})
    assert scripts == {f"sextant-{part}": f"sextant.{part}.__main__:main"}


@cache
def _installed(dist: str, extras: frozenset[str]) -> frozenset[str]:
    """``dist`` and every distribution it requires (with ``extras``), transitively."""
    found = {canonicalize_name(dist)}
    for text in importlib.metadata.requires(dist) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        wanted = (
            marker is None
            or marker.evaluate({"extra": ""})
            or any(marker.evaluate({"extra": e}) for e in extras)
        )
        if wanted:
            found |= _installed(requirement.name, frozenset(requirement.extras))
    return frozenset(found)


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # ``from module import name`` of a name that is no module
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth, except under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _third_party(entry: str) -> set[str]:
    """Top-level names of the libraries the code reachable from ``entry`` imports."""
    seen: set[str] = set()
    libraries: set[str] = set()
    stack = [entry]
    while stack:
        module = stack.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        if path is None:
            continue
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "sextant":
                if _module_file(name) is not None:
                    stack.append(name)
            elif top not in sys.stdlib_module_names:
                libraries.add(top)
    return libraries


@pytest.mark.parametrize("part", PARTS)
def test_a_part_installs_every_library_its_code_imports(part: str) -> None:
    installs = _installed(f"sextant-{part}", frozenset())
    owners = importlib.metadata.packages_distributions()
    missing = {}
    for library in _third_party(f"sextant.{part}.__main__"):
        dists = {canonicalize_name(d) for d in owners.get(library, [])}
        if not dists & installs:
            missing[library] = sorted(dists)
    assert not missing, f"sextant-{part} imports libraries it does not install: {missing}"


@pytest.mark.parametrize("part", ["collector", "notifier", "processor"])
def test_parts_without_a_warehouse_carry_no_embedded_clickhouse(part: str) -> None:
    installs = _installed(f"sextant-{part}", frozenset())
    assert "chdb" not in installs
    assert "clickhouse-connect" not in installs
    assert "chdb" not in _third_party(f"sextant.{part}.__main__")
