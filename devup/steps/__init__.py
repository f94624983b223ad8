"""One module per kind of step; importing this package registers every inverse."""

from devup.steps import files, group, hooks, ports, service, worktree

__all__ = ["files", "group", "hooks", "ports", "service", "worktree"]
