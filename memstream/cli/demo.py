"""`memstream demo`: a local broker, one worker, a sample conversation, and the memory updates it causes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import orjson
import typer
from rich.console import Console

from memstream.agents.settings import get_settings
from memstream.streams.client import Publisher, subscribe
from memstream.streams.contracts import InteractionEvent, MemoryUpdate, UpdateKind

out = Console()

SAMPLE = "conversation.jsonl"
QUIET_S = 8.0
QUERY = "Which rail pass should I buy for my trip?"


def _sample(session_id: str) -> list[InteractionEvent]:
    text = resources.files("memstream.cli").joinpath("samples", SAMPLE).read_text()
    events = []
    for line in text.splitlines():
        data = orjson.loads(line)
        data["session_id"] = session_id
        data["event_id"] = f"{session_id}-{data['event_id']}"
        events.append(InteractionEvent.model_validate(data))
    last = events[-1]
    events.append(
        last.model_copy(
            update={
                "event_id": f"{session_id}-end",
                "kind": "session_end",
                "text": "",
                "role": "system",
                "ts": last.ts + 1,
            }
        )
    )
    return events


def _ensure_broker(bootstrap: str) -> None:
    from memstream.deploy.kafka import LocalKafka
    from memstream.deploy.kafka.process import port_open

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if port_open(host, int(port)):
        return
    if host not in ("127.0.0.1", "localhost"):
        raise typer.BadParameter(f"no broker answers at {bootstrap}")
    LocalKafka(port=int(port)).up()


def _complete(seen: list[MemoryUpdate], messages: int) -> bool:
    """Every message indexed and every one of them inside a sealed episode."""
    indexed = {u.ids[0] for u in seen if u.kind == UpdateKind.EVENT_INDEXED}
    sealed = {e for u in seen if u.kind == UpdateKind.EPISODE_SEALED for e in u.payload.get("event_ids", [])}
    return len(indexed) >= messages and len(sealed) >= messages


async def _recall(web_port: int, session_id: str) -> list[dict]:
    import aiohttp

    body = {"query": QUERY, "tenant_id": "demo", "session_id": session_id, "budget": 5}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{web_port}/recall/", json=body) as response:
            response.raise_for_status()
            return (await response.json())["events"]


def _describe(update: MemoryUpdate) -> str:
    payload = update.payload
    if update.kind == UpdateKind.EPISODE_SEALED:
        events = payload.get("event_ids", [])
        return f"episode {payload.get('episode_index')} sealed: {len(events)} events ({events[0]} … {events[-1]})"
    if update.kind == UpdateKind.EPISODE_OPENED:
        return f"episode {payload.get('episode_index')} opened at {payload.get('event_ids', ['?'])[0]}"
    return ", ".join(update.ids)


async def _run(session_id: str, timeout: float, worker: subprocess.Popen) -> list[MemoryUpdate]:
    events = _sample(session_id)
    seen: list[MemoryUpdate] = []
    async with subscribe(session_id=session_id) as updates:
        async with Publisher() as pub:
            await pub.publish_many(events)
        out.print(f"[bold]published {len(events)} events[/bold] of session {session_id}; memory updates:")
        started = last = time.monotonic()
        while time.monotonic() - started < timeout:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}")
            batch = await updates.poll(timeout=1.0)
            if not batch:
                if seen and time.monotonic() - last > QUIET_S:
                    break
                continue
            last = time.monotonic()
            for update in batch:
                seen.append(update)
                out.print(f"  [cyan]{update.kind:<15}[/cyan] {_describe(update)}")
            if _complete(seen, len(events) - 1):
                break
    return seen


def demo(
    timeout: float = typer.Option(180.0, help="Give up waiting for updates after this many seconds."),
    state_dir: Path = typer.Option(Path("var/demo"), help="The demo worker's state directory."),
) -> None:
    """Start Kafka if needed and a worker, publish a sample conversation, print the memory updates."""
    settings = get_settings()
    _ensure_broker(settings.kafka.bootstrap)
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "worker.log"
    env = {
        **os.environ,
        "MEMSTREAM_WORKER__STATE_DIR": str(state_dir / "state"),
        "MEMSTREAM_AUTH__MODE": "none",  # the demo's worker serves 127.0.0.1 only; workers need keys by default
        "PYTHONUNBUFFERED": "1",
    }
    out.print(f"starting a worker (log: {log_path}) …")
    with open(log_path, "ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "memstream.cli", "worker", "--loglevel", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        session_id = f"demo-{int(time.time())}"
        try:
            seen = asyncio.run(_run(session_id, timeout, worker))
        except RuntimeError as exc:
            out.print(f"[red]{exc}; see {log_path}[/red]")
            raise typer.Exit(1) from None
        recalled = asyncio.run(_recall(settings.worker.web_port, session_id))
        out.print(f"[bold]recall[/bold] {QUERY!r} → the {len(recalled)} best events (hybrid search):")
        for item in recalled:
            score = "context" if item["score"] is None else f"{item['score']:.2f}"
            out.print(f"  [dim]{score:>7} · episode {item['episode_index']} · {item['role']:>9}[/dim] {item['text']}")
        kinds: dict[str, int] = {}
        for update in seen:
            kinds[update.kind] = kinds.get(update.kind, 0) + 1
        out.print("[bold]summary[/bold]: " + ", ".join(f"{k} × {n}" for k, n in sorted(kinds.items())))
        if not seen:
            out.print(f"[red]no memory updates arrived; see {log_path}[/red]")
            raise typer.Exit(1)
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
