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
    "agents": ("roost.edge", "roost.api", "roost.signal", "roost.media"),
    "routing": ("roost.room", "roost.signal", "roost.edge", "roost.api", "roost.media"),
}
# package → third-party modules that belong to another layer
FOREIGN = {
    "signal": ("aiohttp",),
    "agents": ("aiohttp",),
    "room": ("aiohttp",),
    "media": ("aiohttp",),
}


# SFU module → the concrete SFU modules it must not name: they meet through media/roles.py
ROLES = {
    "media/downtrack.py": ("roost.media.uptrack", "roost.media.rtpsession"),
    "media/uptrack.py": ("roost.media.downtrack",),
    "media/rtpsession.py": ("roost.media.downtrack",),
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
    where = SRC / package
    for path in sorted(where.rglob("*.py")) if where.is_dir() else [where]:
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


@pytest.mark.parametrize("module", sorted(ROLES))
def test_the_sfu_classes_meet_only_through_their_roles(module: str) -> None:
    assert _violations(module, ROLES[module]) == []


def test_the_checker_sees_an_import_it_forbids(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from roost.room.room import Room\nimport aiohttp.web\n")
    assert [m for _, m in _imports(module)] == ["typing", "roost.room.room", "aiohttp.web"]
