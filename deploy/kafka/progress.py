"""Progress output on stderr: a rich spinner on terminals, a plain line every few seconds elsewhere (CI)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.status import Status


class Progress:
    """Step messages and long-running-step updates for the local broker (silent when disabled)."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self._status: Status | None = None
        self._last_line = 0.0

    def info(self, message: str) -> None:
        """Print one step line."""
        if self.enabled:
            self.console.print(f"[bold cyan]kafka[/] {message}")

    @contextmanager
    def step(self, message: str) -> Iterator[Progress]:
        """A long step: spinner (terminal) or periodic lines; call :meth:`update` inside."""
        if not self.enabled:
            yield self
            return
        self._last_line = time.monotonic()
        if self.console.is_terminal:
            with self.console.status(f"[bold cyan]kafka[/] {message}") as status:
                self._status = status
                try:
                    yield self
                finally:
                    self._status = None
        else:
            self.info(message)
            yield self

    def update(self, message: str) -> None:
        """Refresh the current step's text (throttled to one line per 5 s off-terminal)."""
        if not self.enabled:
            return
        if self._status is not None:
            self._status.update(f"[bold cyan]kafka[/] {message}")
        elif time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            self.info(message)
