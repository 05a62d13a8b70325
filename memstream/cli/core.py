"""Core commands: run a worker, publish events, tail memory updates, create topics."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from memstream.agents.settings import get_settings
from memstream.agents.table_state import bind_to_cluster
from memstream.streams.admin import cluster_id, ensure_topics
from memstream.streams.client import Publisher, subscribe
from memstream.streams.codec import InvalidRecord, decode
from memstream.streams.contracts import FeedbackEvent, InteractionEvent

err = Console(stderr=True)


def worker(
    stages: str = typer.Option("", help="Comma-separated agent stages to run (default: all)."),
    web_port: int | None = typer.Option(None, help="HTTP port of this worker (default from settings)."),
    state_dir: Path | None = typer.Option(None, help="State directory of this worker (default from settings)."),
    loglevel: str = typer.Option("info", help="Log level."),
) -> None:
    """Run a memstream worker (Faust) until interrupted."""
    from memstream.agents.app import create_app

    worker_class = _quiet_worker_class()

    settings = get_settings()
    if web_port is not None:
        settings.worker.web_port = web_port
    if state_dir is not None:
        settings.worker.state_dir = state_dir
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings.kafka))
    chosen = tuple(s.strip() for s in stages.split(",") if s.strip()) or None
    app = create_app(settings, stages=chosen)
    bind_to_cluster(
        settings.worker.state_dir, Path(app.conf.tabledir), loop.run_until_complete(cluster_id(settings.kafka))
    )
    worker_class(app, loglevel=loglevel, loop=loop).execute_from_commandline()


def _quiet_worker_class():
    from faust.worker import Worker

    from memstream.agents.logs import install_repeat_filter

    class QuietWorker(Worker):
        """Faust's worker without its terminal spinner: the spinner sets the root logger to DEBUG, so every
        debug call in aiokafka/faust built a log record (≈2 % of a busy worker's CPU) only to drop it."""

        def on_setup_root_logger(self, logger, level: int) -> None:
            self.spinner = None
            super().on_setup_root_logger(logger, level)
            install_repeat_filter(logger)  # e.g. one line per 10 s, not thousands, while a broker is down

    return QuietWorker


def _read_jsonl(path: Path) -> tuple[list[InteractionEvent | FeedbackEvent], list[str]]:
    records: list[InteractionEvent | FeedbackEvent] = []
    errors: list[str] = []
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
                model = FeedbackEvent if isinstance(data, dict) and "prediction" in data else InteractionEvent
                records.append(decode(line, model))
            except (InvalidRecord, orjson.JSONDecodeError) as exc:
                errors.append(f"{path}:{number}: {exc}")
    return records, errors


def publish(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON Lines of interaction/feedback events."),
    batch: int = typer.Option(500, min=1, help="Events sent per pipelined batch."),
) -> None:
    """Validate and publish events from a JSONL file; invalid lines are listed and make the exit code 1."""
    records, errors = _read_jsonl(file)
    for line in errors:
        err.print(f"[red]invalid[/red] {line}")

    async def run() -> None:
        async with Publisher() as pub:
            with Progress(
                TextColumn("publishing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err
            ) as bar:
                task = bar.add_task("publish", total=len(records))
                for start in range(0, len(records), batch):
                    chunk = records[start : start + batch]
                    await pub.publish_many(chunk)
                    bar.advance(task, len(chunk))

    asyncio.run(run())
    err.print(f"published {len(records)} events, {len(errors)} invalid lines not sent")
    if errors:
        raise typer.Exit(1)


def tail(
    tenant: str | None = typer.Option(None, help="Only this tenant's updates."),
    session: str | None = typer.Option(None, help="Only this session's updates."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Replay retained updates first."),
    limit: int = typer.Option(0, min=0, help="Stop after this many updates (0 = run until interrupted)."),
) -> None:
    """Print memory updates as JSON lines as they are announced."""

    async def run() -> None:
        seen = 0
        async with subscribe(tenant_id=tenant, session_id=session, from_beginning=from_beginning) as updates:
            async for update in updates:
                sys.stdout.write(orjson.dumps(update.model_dump(mode="json")).decode() + "\n")
                sys.stdout.flush()
                seen += 1
                if limit and seen >= limit:
                    return

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


def topics() -> None:
    """Create memstream's topics (explicit partition counts) if they do not exist."""
    created = asyncio.run(ensure_topics(get_settings().kafka))
    err.print(f"created: {', '.join(created) or 'none (all exist)'}")


def config(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Every setting: its environment variable, current value (secrets hidden) and meaning."""
    from pydantic import BaseModel
    from rich.table import Table

    rows: list[tuple[str, str, str]] = []

    def walk(model: BaseModel, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value, f"{prefix}{name.upper()}__")
            else:
                rows.append((f"{prefix}{name.upper()}", str(value), field.description or ""))

    walk(get_settings(), "MEMSTREAM_")
    if json_out:
        sys.stdout.write(orjson.dumps({k: {"value": v, "description": d} for k, v, d in rows}).decode() + "\n")
        return
    table = Table("variable", "value", "meaning")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
