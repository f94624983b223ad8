"""How the core tells the outside what it is doing; the CLI renders, tests record."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def step_started(self, step: str) -> None: ...
    def step_done(self, step: str, seconds: float, detail: str = "") -> None: ...
    def step_failed(self, step: str, seconds: float, error: str) -> None: ...
    def undone(self, label: str, error: str | None) -> None: ...
    def note(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...


class NullReporter:
    def step_started(self, step: str) -> None:
        pass

    def step_done(self, step: str, seconds: float, detail: str = "") -> None:
        pass

    def step_failed(self, step: str, seconds: float, error: str) -> None:
        pass

    def undone(self, label: str, error: str | None) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass
