"""STYLE's import rules, checked by resolving every import form in the package.

`import devup.x`, `from devup import x`, `from devup.x import y` and relative imports all count,
under TYPE_CHECKING and inside functions too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "devup"

# Which modules may import which outside libraries (top-level name -> allowed module names).
ALLOWED = {
    "typer": {"cli"},
    "rich": {"output"},
    "subprocess": {"runner"},
    "docker": {"engine"},
    "git": {"git"},
}

# Imports flow one way, top to bottom: a module may import its own layer and the layers below.
LAYERS: list[tuple[str, set[str]]] = [
    ("cli", {"__main__", "cli", "output", "fastpath"}),
    (
        "use cases",
        {
            "session",
            "preflight",
            "teardown",
            "recovery",
            "workspace",
            "inspect",
            "gc",
            "logs",
            "init",
            "doctor",
            "data",
            "snapshots",
            "clones",
            "attach",
            "claude_code",
            "run",
            "fleet",
            "changes",
            "trust",
            "units",
        },
    ),
    ("steps", {"steps"}),
    ("undo/journal", {"undo", "journal"}),
    (
        "adapters",
        {
            "compose",
            "compose_model",
            "compose_inputs",
            "mounts",
            "remote",
            "sshproxy",
            "crashlog",
            "engine",  # a package: client, queries, removal, volumes, pausing, copies, labels
            "git",
            "processes",
            "locks",
            "records",
            "leases",
            "config",
            "config_check",
            "model",
            "envvars",
            "hookspec",
            "dag",
            "report",
            "faults",
            "usage",
            "drift",
            "router",
        },
    ),
    ("runner", {"runner"}),
    ("paths", {"paths"}),  # where state lives, and making its folders 0700: below everyone
    ("errors", {"errors", "devup"}),  # "devup": the package itself, for __version__
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _internal_imports(module: str) -> set[str]:
    """Every devup module `module` imports, whatever the form."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "devup"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "devup":
                continue
            for alias in node.names:  # `from devup import output` imports the module devup.output
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    found.discard(module)
    return found


def _external_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def layer_of(module: str) -> int:
    """The layer index of a devup module (0 is the top); unknown modules fail the test."""
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "devup"
    for index, (_, members) in enumerate(LAYERS):
        if key in members:
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {Path(__file__).name}")


def backwards_arrows(imports: dict[str, set[str]]) -> list[str]:
    """Every import that runs from a lower layer back up to a higher one."""
    arrows = []
    for module, targets in sorted(imports.items()):
        for target in sorted(targets):
            if layer_of(target) < layer_of(module):
                arrows.append(
                    f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                )
    return arrows


def test_outside_libraries_stay_in_their_adapter() -> None:
    offenders = []
    for module, path in MODULES.items():
        # The adapter that owns a library may be a package (devup.engine.client is the engine's).
        owner = module.split(".")[1] if "." in module else module
        for lib, allowed in ALLOWED.items():
            if lib in _external_imports(path) and owner not in allowed:
                offenders.append(f"{module} imports {lib}")
    assert offenders == []


def test_imports_flow_one_way_through_the_layers() -> None:
    imports = {module: _internal_imports(module) for module in MODULES}
    assert backwards_arrows(imports) == []


@pytest.mark.parametrize(
    "source",
    [
        "from devup import cli\n",
        "import devup.session\n",
        "from devup.output import ConsoleReporter\n",
        "from . import steps\n",
        "if TYPE_CHECKING:\n    from devup.undo import UndoStack\n",
    ],
)
def test_a_backwards_import_in_any_form_is_caught(tmp_path: Path, source: str) -> None:
    """The guard guards: each import form, added to the runner, is reported as an arrow up."""
    original = MODULES["devup.runner"]
    fake = tmp_path / original.name
    fake.write_text(original.read_text() + "\n" + source)
    MODULES["devup.runner"] = fake
    try:
        assert backwards_arrows({"devup.runner": _internal_imports("devup.runner")}), source
    finally:
        MODULES["devup.runner"] = original


def import_cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Modules that import each other, directly or through others (each cycle once)."""
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(path: list[str]) -> None:
        for target in sorted(imports.get(path[-1], ())):
            if target == path[0]:
                if frozenset(path) not in seen:
                    seen.add(frozenset(path))
                    cycles.append([*path, target])
            elif target not in path and target > path[0]:  # each cycle from its smallest module
                visit([*path, target])

    for module in sorted(imports):
        visit([module])
    return cycles


def test_no_two_modules_import_each_other() -> None:
    """Within a layer too: a cycle means neither module can be read, tested or moved alone."""
    imports = {module: _internal_imports(module) for module in MODULES}
    assert import_cycles(imports) == []


def test_a_cycle_within_a_layer_is_caught() -> None:
    imports = {module: _internal_imports(module) for module in MODULES}
    assert "devup.remote" in imports["devup.engine.client"]
    imports["devup.remote"] = {*imports["devup.remote"], "devup.engine.client"}  # client imports remote
    assert ["devup.engine.client", "devup.remote", "devup.engine.client"] in import_cycles(imports)
