"""What the commands that call a worker's HTTP API (recall --worker, compensate) share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import typer
from rich.console import Console

from memstream.streams.codec import InvalidRecord
from memstream.streams.memory_client import MemoryApiError

err = Console(stderr=True)


@contextmanager
def worker_errors(worker: str) -> Iterator[None]:
    """A refused request, an error answer or an unreachable worker as one line and an exit code."""
    try:
        yield
    except InvalidRecord as exc:
        err.print(f"[red]{exc.reason}[/red]")
        raise typer.Exit(2) from None
    except MemoryApiError as exc:
        err.print(f"[red]worker answered {exc.status}[/red]: {exc.detail}")
        raise typer.Exit(2) from None
    except httpx.HTTPError as exc:
        err.print(f"[red]cannot reach the worker at {worker}[/red]: {exc}")
        raise typer.Exit(1) from None
