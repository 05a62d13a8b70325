"""``memstream store …``: maintenance of the memory store (with no worker holding it)."""

from __future__ import annotations

import asyncio
import json

import typer

app = typer.Typer(
    help="Memory store maintenance (stop the workers that own the embedded store first).", no_args_is_help=True
)


@app.callback()
def store() -> None:
    """Memory store maintenance."""


@app.command("reindex")
def reindex(
    page: int = typer.Option(512, min=1, max=4096, help="points read per page"),
) -> None:
    """Give every event the hybrid-search vectors of this version: a store written by an older memstream
    gains its lexical and context vectors (nothing is dropped: every point keeps its id, payload and
    embedding); run it again after changing MEMSTREAM_STORE__LEXICAL__* or MEMSTREAM_RECALL__CONTEXT_BETA."""
    from memstream.agents.settings import get_settings
    from memstream.agents.store import StoreError, make_store

    settings = get_settings()

    async def work() -> dict[str, int]:
        async with make_store(settings.store, state_dir=settings.worker.state_dir, migrate=True) as st:
            return await st.reindex_events(
                settings.recall.context_beta, page=page, progress=lambda m: typer.echo(m, err=True)
            )

    try:
        result = asyncio.run(work())
    except StoreError as exc:
        typer.echo(f"store reindex: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(result))
    if result["events_after"] != result["events_before"]:
        typer.echo("store reindex: the number of events changed while reindexing (was a worker writing?)", err=True)
        raise typer.Exit(1)
