"""End-to-end benchmark: publish → `event_indexed` throughput with 1 and 2 workers, latency at half the
max rate, and the embedder alone on the same texts (the anchor measured in the same run).

Each measured run uses a fresh topic namespace on a private broker started for the benchmark (a fresh
KRaft node in a temporary data dir), so nothing else shares it. Worker start-up, model load and
the consumer group's rebalances are excluded: warm-up batches are published until every worker has
processed some, before the clock starts.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from bench.corpus import wiki_sentences
from memstream.agents.settings import get_settings
from memstream.deploy.workers import Deployment, free_port
from memstream.streams.client import Publisher, subscribe
from memstream.streams.contracts import InteractionEvent, UpdateKind

err = Console(stderr=True)


def _events(texts: list[str], sessions: int, tag: str) -> list[InteractionEvent]:
    now = time.time()
    return [
        InteractionEvent(
            event_id=f"{tag}-{i}",
            tenant_id="bench",
            user_id=f"u{i % sessions}",
            session_id=f"s{i % sessions}",
            ts=now + i * 0.001,
            text=text,
        )
        for i, text in enumerate(texts)
    ]


def embed_alone(texts: list[str], batches: tuple[int, ...]) -> dict[int, float]:
    """Sentences/s of the embedder by itself at each batch size (texts in publish order, each call sorted by
    length as the embedder does). The anchor is the best of them: the embed stage calls the embedder with
    ``embed.chunk`` texts, the embedder's own default batch is larger, and neither may flatter the ratio."""
    from memstream.models.embedder import Embedder

    embedder = Embedder(get_settings().embedder)
    embedder.embed(texts[: max(batches)])  # warm-up
    rates = {}
    for batch in batches:
        started = time.perf_counter()
        for i in range(0, len(texts), batch):
            embedder.embed(texts[i : i + batch])
        rates[batch] = len(texts) / (time.perf_counter() - started)
    return rates


async def _until_indexed(
    updates, ids: set[str], timeout: float, deployment: Deployment, arrivals: dict[str, float] | None = None
) -> None:
    pending = set(ids)
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(pending)} of {len(ids)} events not indexed after {timeout:.0f}s\n" + deployment.logs()
            )
        if any(proc.poll() is not None for proc in deployment.workers):
            raise RuntimeError("a worker exited during the benchmark\n" + deployment.logs())
        for update in await updates.poll(timeout=0.2, max_records=5000):
            if update.kind == UpdateKind.EVENT_INDEXED and update.ids[0] in pending:
                pending.discard(update.ids[0])
                if arrivals is not None:
                    arrivals[update.ids[0]] = time.perf_counter()


def _embedded_by_worker(deployment: Deployment) -> dict[str, float]:
    """Records each worker's embed stage has taken in so far (its /metrics), 0 where it does not answer."""
    counts = {}
    for name, port in deployment.ports.items():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            counts[name] = 0.0
            continue
        counts[name] = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "memstream_events_total"
            and sample.labels.get("stage") == "embed"
            and sample.labels.get("outcome") == "in"
        )
    return counts


async def _warm_up(
    pub: Publisher, updates, texts: list[str], sessions: int, timeout: float, deployment: Deployment
) -> None:
    """Publish warm-up batches until every worker has processed some: model loads, group joins and the
    rebalances they cause all happen before the clock starts (a worker joining mid-run stalls the group)."""
    for attempt in range(20):
        warm = _events(texts, sessions, f"warm{attempt}")
        await pub.publish_many(warm)
        await _until_indexed(updates, {e.event_id for e in warm}, timeout, deployment)
        counts = await asyncio.to_thread(_embedded_by_worker, deployment)
        if all(counts.values()):
            return
        await asyncio.sleep(1.0)
    raise RuntimeError(
        f"a worker never took part in the consumer group: records embedded per worker {counts}\n" + deployment.logs()
    )


async def _run_workers(
    bootstrap: str,
    root: Path,
    texts: list[str],
    workers: int,
    sessions: int,
    partitions: int,
    rate: float | None,
    timeout: float,
) -> dict[str, Any]:
    deployment = Deployment(bootstrap, root / f"w{workers}-{'rate' if rate else 'max'}", partitions=partitions)
    await deployment.create_topics()
    for n in range(workers):
        deployment.start_worker(f"worker{n}")
    try:
        main = _events(texts, sessions, "main")
        async with subscribe(kinds=[UpdateKind.EVENT_INDEXED], kafka=deployment.kafka) as updates:
            async with Publisher(deployment.kafka) as pub:
                await _warm_up(pub, updates, texts[:64], sessions, timeout, deployment)
                sent: dict[str, float] = {}
                arrivals: dict[str, float] = {}
                started = time.perf_counter()
                if rate is None:
                    consumer = asyncio.create_task(
                        _until_indexed(updates, {e.event_id for e in main}, timeout, deployment)
                    )
                    for i in range(0, len(main), 500):
                        await pub.publish_many(main[i : i + 500])
                    await consumer
                else:
                    consumer = asyncio.create_task(
                        _until_indexed(updates, {e.event_id for e in main}, timeout, deployment, arrivals)
                    )
                    interval = 1.0 / rate
                    for i, event in enumerate(main):
                        delay = started + i * interval - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        sent[event.event_id] = time.perf_counter()
                        await pub.publish(event)
                    await consumer
                elapsed = time.perf_counter() - started
        result: dict[str, Any] = {
            "workers": workers,
            "events": len(main),
            "seconds": round(elapsed, 2),
            "per_s": round(len(main) / elapsed, 1),
        }
        if rate is not None:
            latencies = np.array([(arrivals[k] - sent[k]) * 1000 for k in sent if k in arrivals])
            result.update(
                rate=round(rate, 1),
                p50_ms=round(float(np.percentile(latencies, 50)), 1),
                p95_ms=round(float(np.percentile(latencies, 95)), 1),
                p99_ms=round(float(np.percentile(latencies, 99)), 1),
            )
        return result
    finally:
        deployment.stop_workers()


async def _bench(n: int, sessions: int, partitions: int, timeout: float) -> dict[str, Any]:
    from memstream.deploy.kafka import LocalKafka

    texts = wiki_sentences(n + 64, seed=7)
    with tempfile.TemporaryDirectory(prefix="memstream-bench-") as tmp:
        root = Path(tmp)
        broker = LocalKafka(data_dir=root / "kafka", port=free_port(), controller_port=free_port(), progress=True)
        bootstrap = await asyncio.to_thread(broker.up)
        try:
            err.print("[bold]embedder alone[/bold] …")
            settings = get_settings()
            sizes = tuple(sorted({settings.embed.chunk, settings.embedder.batch_size}))
            embed_rates = await asyncio.to_thread(embed_alone, texts[64:], sizes)
            embed_per_s = max(embed_rates.values())
            err.print("  " + ", ".join(f"batch {b}: {r:.0f}" for b, r in embed_rates.items()) + " sentences/s")
            runs = {}
            for workers in (1, 2):
                err.print(f"[bold]pipeline, {workers} worker(s), max rate[/bold] …")
                runs[workers] = await _run_workers(
                    bootstrap, root, texts[64:], workers, sessions, partitions, None, timeout
                )
                err.print(f"  {runs[workers]['per_s']} events/s")
            rate = runs[1]["per_s"] / 2
            err.print(f"[bold]latency at half the max rate ({rate:.0f} events/s), 1 worker[/bold] …")
            latency = await _run_workers(
                bootstrap, root, texts[64 : 64 + max(200, n // 4)], 1, sessions, partitions, rate, timeout
            )
        finally:
            await asyncio.to_thread(broker.down)
    pipeline_per_s = runs[1]["per_s"]
    from memstream.models.onnx_cache import available_cpus

    return {
        "events": n,
        "sessions": sessions,
        "partitions": partitions,
        "cpus": available_cpus(),
        "embedder_threads": settings.embedder.threads or available_cpus(),
        "embed_per_s": round(embed_per_s, 1),
        "embed_per_s_by_batch": {str(b): round(r, 1) for b, r in embed_rates.items()},
        "pipeline_per_s": pipeline_per_s,
        "ratio": round(pipeline_per_s / embed_per_s, 3),
        "two_worker_per_s": runs[2]["per_s"],
        "two_worker_speedup": round(runs[2]["per_s"] / pipeline_per_s, 3),
        "latency_rate_per_s": latency["rate"],
        "p50_ms": latency["p50_ms"],
        "p95_ms": latency["p95_ms"],
        "p99_ms": latency["p99_ms"],
        "runs": [runs[1], runs[2], latency],
    }


def run(n: int = 4000, sessions: int = 50, partitions: int = 4, timeout: float = 600.0) -> dict[str, Any]:
    """Measure and return the benchmark's JSON-able result."""
    return asyncio.run(_bench(n, sessions, partitions, timeout))
