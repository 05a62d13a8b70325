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


async def embed_stage_alone(
    bootstrap: str, root: Path, texts: list[str], sessions: int, partitions: int, timeout: float, **env: str
) -> dict[str, Any]:
    """Events/s of the embed stage fed alone: a backlog of ``texts`` is published first, then one worker that
    runs only the embed stage (``--stages embed``) drains it into `embedded`. The rate is taken between the
    arrival of the first and the last chunk in `embedded`, so the worker's start-up, model load and group
    join are outside it, and nothing else (segmenter, store, publisher) shares the cores meanwhile."""
    from aiokafka import AIOKafkaConsumer

    deployment = Deployment(bootstrap, root / f"embed-stage-{len(env)}", partitions=partitions)
    await deployment.create_topics()
    events = _events(texts, sessions, "stage")
    async with Publisher(deployment.kafka) as pub:
        for i in range(0, len(events), 500):
            await pub.publish_many(events[i : i + 500])
    consumer = AIOKafkaConsumer(
        deployment.kafka.topics.embedded,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **deployment.kafka.client_kwargs(),
    )
    await consumer.start()
    deployment.start_worker("embed-only", stages="embed", **env)
    arrivals: list[float] = []
    deadline = time.monotonic() + timeout
    try:
        while len(arrivals) < len(events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(arrivals)} of {len(events)} events embedded\n" + deployment.logs())
            if any(proc.poll() is not None for proc in deployment.workers):
                raise RuntimeError("the embed-only worker exited\n" + deployment.logs())
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.perf_counter()
            arrivals.extend(now for records in batches.values() for _ in records)
    finally:
        await consumer.stop()
        deployment.stop_workers()
    first = arrivals[0]
    head = sum(1 for t in arrivals if t == first)  # the first fetch's records: the clock starts after them
    per_s = (len(arrivals) - head) / (arrivals[-1] - first)
    return {"events": len(events), "timed_events": len(arrivals) - head, "per_s": round(per_s, 1), "env": env}


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
            err.print("[bold]embed stage alone[/bold] (one worker running only the embed stage, fed a backlog) …")
            stage = await embed_stage_alone(bootstrap, root, texts[64:], sessions, partitions, timeout)
            err.print(f"  {stage['per_s']:.0f} events/s ({stage['per_s'] / embed_per_s:.2f}x the embedder alone)")
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
        "embed_stage_per_s": stage["per_s"],
        "embed_stage_ratio": round(stage["per_s"] / embed_per_s, 3),
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
