"""One module per kind of step; `load_all()` registers every inverse for the undo registry.

Importing the package alone loads nothing: `down` needs three of the six modules, and every
module it does not import is time a user waits for.
"""

import importlib

_MODULES = ("files", "group", "hooks", "ports", "routes", "service", "volumes", "worktree")


def load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"devup.steps.{module}")
