"""``memstream recall``: recall events (hybrid search, the default) or episodes for a query, straight from
the configured store or from a worker's HTTP API.

With the embedded (edge) store this needs the store's directory to itself: while a worker runs, it owns
the store, so ask the worker's HTTP ``/recall/`` instead (or use the server backend).

    python -m memstream.cli.recall "where did we leave the budget?" --tenant acme --user alice
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from memstream.agents.settings import get_settings
from memstream.agents.store import (
    RecalledEpisode,
    RecalledEvent,
    StoreError,
    StoreLockedError,
    make_store,
    recall,
    recall_events,
)
from memstream.cli.worker_api import worker_errors
from memstream.streams.memory_client import MemoryClient

err = Console(stderr=True)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print(episodes: list[RecalledEpisode]) -> None:
    out = Console()
    if not episodes:
        out.print("[dim]nothing recalled[/dim]")
        return
    for ep in episodes:
        mark = f"score {ep.score:.3f}" if ep.score is not None else f"neighbour (of {ep.anchor_score:.3f})"
        style = "bold" if ep.is_hit else "dim"
        out.print(f"[{style}]{ep.session_id} · episode {ep.episode_index} · {_when(ep.start_ts)} · {mark}[/{style}]")
        table = Table(show_header=False, box=None, padding=(0, 1, 0, 2))
        table.add_column("ts", style="dim", no_wrap=True)
        table.add_column("role", style="cyan", no_wrap=True)
        table.add_column("text")
        for event in ep.events:
            table.add_row(_when(event.ts), event.role, event.text)
        out.print(table)
        out.print()


def _print_events(events: list[RecalledEvent]) -> None:
    out = Console()
    if not events:
        out.print("[dim]nothing recalled[/dim]")
        return
    table = Table(show_header=True, box=None, padding=(0, 1, 0, 0))
    for column in ("score", "session · episode", "time", "role", "text"):
        table.add_column(column, style="dim" if column != "text" else None, no_wrap=column != "text")
    for e in events:
        score = f"{e.score:.3f}" if e.score is not None else "context"
        episode = "open" if e.episode_index is None else str(e.episode_index)
        table.add_row(score, f"{e.session_id} · {episode}", _when(e.ts), e.role, e.text)
    out.print(table)


async def _recall(query: str, tenant: str, user: str | None, session: str | None, asked: dict) -> list:
    from memstream.models.embedder import Embedder

    settings = get_settings()
    chosen = settings.recall.with_request(asked["mode"], asked["budget"], asked["episode_turns"])
    async with make_store(settings.store, state_dir=settings.worker.state_dir) as store:  # fails fast if locked
        embedder = await asyncio.to_thread(Embedder, settings.embedder)
        vector = (await asyncio.to_thread(embedder.embed, [query]))[0]
        if chosen.mode == "episodes":
            return await recall(
                store, vector, tenant, user_id=user, session_id=session, k_s=asked["k_s"], k_c=asked["k_c"]
            )
        return await recall_events(
            store,
            vector,
            store.lexical.query(query),
            tenant,
            user_id=user,
            session_id=session,
            budget=chosen.budget,
            episode_turns=chosen.episode_turns,
            candidates=chosen.candidates,
        )


def _recall_http(worker: str, query: str, tenant: str, options: dict[str, Any]) -> list[Any]:
    with worker_errors(worker), MemoryClient(worker) as memory:
        found = memory.recall(query, tenant_id=tenant, **options)
    if not found or "events" not in found[0]:  # events mode; an episode carries its events
        return [RecalledEvent(**e) for e in found]
    return [
        RecalledEpisode(
            **{k: v for k, v in e.items() if k not in ("events", "is_hit")},
            events=[RecalledEvent(**ev) for ev in e["events"]],
        )
        for e in found
    ]


def recall_cmd(
    query: str = typer.Argument(..., help="What to remember (free text; it is embedded)."),
    tenant: str = typer.Option(..., "--tenant", help="Tenant to search (required: tenants never mix)."),
    user: str | None = typer.Option(None, "--user", help="Only this user's episodes."),
    session: str | None = typer.Option(None, "--session", help="Only this session's episodes."),
    mode: str | None = typer.Option(
        None, "--mode", help="events (hybrid search over events; default) or episodes (two-stage episode recall)."
    ),
    budget: int | None = typer.Option(None, "--budget", min=1, max=1000, help="Events mode: events returned at most."),
    episode_turns: int | None = typer.Option(
        None, "--episode-turns", min=0, max=50, help="Events mode: turns of a hit's episode returned after it."
    ),
    k_s: int = typer.Option(5, "--k-s", min=1, help="Episodes mode: episodes found by similarity."),
    k_c: int = typer.Option(
        1, "--k-c", min=0, help="Episodes mode: adjacent episodes added on each side of every hit."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    worker: str | None = typer.Option(
        None,
        "--worker",
        help="Ask this worker's HTTP API (e.g. http://127.0.0.1:6066) instead of opening the "
        "store directly; needed while a worker owns the embedded store.",
    ),
) -> None:
    """Recall what memory holds about QUERY: events best first (default), or episodes in time order."""
    if mode not in (None, "events", "episodes"):
        err.print(f"[red]--mode must be events or episodes, not {mode!r}[/red]")
        raise typer.Exit(2)
    # what was not asked stays None: the recall settings of whoever answers (this process, or the worker) apply
    asked = {"mode": mode, "budget": budget, "episode_turns": episode_turns, "k_s": k_s, "k_c": k_c}
    try:
        if worker:
            options = {"user_id": user, "session_id": session} | {k: v for k, v in asked.items() if v is not None}
            found = _recall_http(worker, query, tenant, options)
        else:
            found = asyncio.run(_recall(query, tenant, user, session, asked))
    except StoreLockedError as exc:
        err.print(f"[red]{exc}[/red]\nA running worker owns the embedded store: pass --worker http://127.0.0.1:PORT.")
        raise typer.Exit(2) from exc
    except (StoreError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if json_out:
        sys.stdout.write(orjson.dumps([e.to_dict() for e in found]).decode() + "\n")
    elif found and isinstance(found[0], RecalledEpisode):
        _print(found)
    else:
        _print_events(found)


if __name__ == "__main__":
    typer.run(recall_cmd)
