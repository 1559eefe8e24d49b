"""Progress reporting the library can call without knowing who listens.

The CLI passes a rich implementation that draws on stderr only when it is a TTY;
library callers get :class:`NullProgress` unless they pass their own.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Progress(Protocol):
    def task(self, description: str, total: int | None) -> Callable[..., None]:
        """Start a task; the returned callable advances it: ``advance(n, **fields)``."""

    def log(self, message: str) -> None:
        """A line for the user (on stderr)."""


class NullProgress:
    def task(self, description: str, total: int | None) -> Callable[..., None]:
        def advance(n: int = 1, **fields: Any) -> None:
            return None

        return advance

    def log(self, message: str) -> None:
        return None
