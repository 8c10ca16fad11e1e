"""The layers of docs/architecture.md, checked on the imports: a lower layer never imports an
upper one (not even for typing), and HTTP stays in the edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "roost"

# package → roost packages it must not import
FORBIDDEN = {
    "media": ("roost.room", "roost.signal", "roost.edge", "roost.api", "roost.routing"),
    "room": ("roost.signal", "roost.edge", "roost.api"),
    "signal": ("roost.edge", "roost.api"),
    "routing": ("roost.room", "roost.signal", "roost.edge", "roost.api", "roost.media"),
}
# package → third-party modules that belong to another layer
FOREIGN = {
    "signal": ("aiohttp",),
    "room": ("aiohttp",),
    "media": ("aiohttp",),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return sorted(found)


def _violations(package: str, banned: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((SRC / package).rglob("*.py")):
        for line, module in _imports(path):
            if any(module == b or module.startswith(b + ".") for b in banned):
                out.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_does_not_import_the_layers_above_it(package: str) -> None:
    assert _violations(package, FORBIDDEN[package]) == []


@pytest.mark.parametrize("package", sorted(FOREIGN))
def test_http_stays_in_the_edge(package: str) -> None:
    assert _violations(package, FOREIGN[package]) == []


def test_the_checker_sees_an_import_it_forbids(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from roost.room.room import Room\nimport aiohttp.web\n")
    assert [m for _, m in _imports(module)] == ["typing", "roost.room.room", "aiohttp.web"]
