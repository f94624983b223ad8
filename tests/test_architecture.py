"""STYLE's import rules, checked by scanning the package's imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "devup"
# Which modules may import which outside libraries (top-level name -> allowed module stems).
ALLOWED = {
    "typer": {"cli"},
    "rich": {"output"},
    "subprocess": {"runner"},
    "docker": {"compose"},
    "git": {"git"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_outside_libraries_stay_in_their_adapter():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for lib, allowed in ALLOWED.items():
            if lib in _imports(path) and path.stem not in allowed:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {lib}")
    assert offenders == []


def test_core_never_imports_the_cli():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.stem in {"cli", "__main__", "output"}:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in {"devup.cli", "devup.output"}:
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []
