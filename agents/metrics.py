"""Prometheus metrics of one worker: what the agents record, `GET /metrics`, and consumer lag.

Each `Runtime` owns a `Metrics` with its own `CollectorRegistry` (never the process-global one), so
several apps can live in one process (tests) without clashing metric names. Agents record through
``runtime.metrics``; the ``metrics`` stage adds the web view and the lag timer.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

if TYPE_CHECKING:
    from memstream.agents.runtime import Runtime
    from memstream.models.session_state import SessionState

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""Prometheus text format 0.0.4 (what every Prometheus server scrapes)."""

LAG_INTERVAL_S = 5.0
"""How often the worker refreshes `memstream_consumer_lag`."""

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SCORE_BUCKETS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Metrics:
    """The worker's metrics and the helpers agents call to record them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "memstream_events",
            "Records a stage consumed (outcome=in) and sent downstream (outcome=out)",
            ["stage", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "memstream_dead_letters", "Records a stage sent to dead-letters", ["stage"], registry=r
        )
        self.store_refused = Counter(
            "memstream_store_refused",
            "Records a stage dead-lettered because the store refused their batch for good (a permanent error)",
            ["stage"],
            registry=r,
        )
        self.forgotten_dropped = Counter(
            "memstream_forgotten_dropped",
            "Records of a forgotten user (dated before the forget) a stage dropped",
            ["stage"],
            registry=r,
        )
        self.batch_size = Histogram(
            "memstream_batch_size", "Records per batch a stage processed", ["stage"], buckets=_SIZE_BUCKETS, registry=r
        )
        self.embed_batch_seconds = Histogram(
            "memstream_embed_batch_seconds",
            "Embedder time of one call (a chunk of a batch)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.embed_event_seconds = Histogram(
            "memstream_embed_event_seconds",
            "Embedding time per event (batch time / batch size, one per event)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.segment_score = Histogram(
            "memstream_segment_score",
            "Segmenter's boundary (surprise) score per decided event",
            buckets=_SCORE_BUCKETS,
            registry=r,
        )
        self.episodes = Counter(
            "memstream_episodes", "Episode changes announced by the segmenter", ["kind"], registry=r
        )
        self.episode_events = Histogram(
            "memstream_episode_events", "Events per sealed episode", buckets=_SIZE_BUCKETS, registry=r
        )
        self.store_seconds = Histogram(
            "memstream_store_seconds", "Wall time of one store operation", ["op"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.consumer_lag = Gauge(
            "memstream_consumer_lag",
            "Records behind the end of an assigned partition (highwater - committed)",
            ["topic", "partition"],
            registry=r,
        )

    # -- recording helpers -----------------------------------------------------------------------
    def received(self, stage: str, n: int = 1) -> None:
        self.events.labels(stage, "in").inc(n)

    def sent(self, stage: str, n: int = 1) -> None:
        self.events.labels(stage, "out").inc(n)

    def dead_letter(self, stage: str) -> None:
        self.dead_letters.labels(stage).inc()

    def refused(self, stage: str, n: int) -> None:
        """`n` records dead-lettered with a batch the store refused (each also counts as a dead letter)."""
        self.store_refused.labels(stage).inc(n)

    def forgotten(self, stage: str, n: int) -> None:
        if n:
            self.forgotten_dropped.labels(stage).inc(n)

    def batch(self, stage: str, size: int) -> None:
        self.batch_size.labels(stage).observe(size)

    def embedded(self, seconds: float, n: int) -> None:
        """One embedder call on `n` events took `seconds`."""
        self.embed_batch_seconds.observe(seconds)
        per_event = seconds / max(n, 1)
        for _ in range(n):
            self.embed_event_seconds.observe(per_event)

    def scores(self, values: Iterable[float]) -> None:
        for value in values:
            if not math.isnan(value):
                self.segment_score.observe(value)

    def episode(self, kind: str, n_events: int) -> None:
        self.episodes.labels(kind).inc()
        if kind == "sealed":
            self.episode_events.observe(n_events)

    @contextmanager
    def store_timer(self, op: str) -> Iterator[None]:
        """Time a store operation (`with metrics.store_timer("upsert_events"): await ...`)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.store_seconds.labels(op).observe(time.perf_counter() - start)

    def set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        """Replace the lag gauge's series (partitions revoked by a rebalance disappear)."""
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def new_scores(state: SessionState, cursor_before: int) -> list[float]:
    """Scores of the events the segmenter decided since its cursor was at `cursor_before` (a push decides
    at most a few; a flush drops its decided events with the session's state, so it yields none)."""
    return [state.scores[d - state.base] for d in range(max(cursor_before, state.base), state.cursor)]


async def consumer_lag(app: faust.App, topic_names: set[str]) -> dict[tuple[str, int], int]:
    """lag = highwater − committed offset for each assigned partition of `topic_names`.

    Committed offsets (the next offset to read, Kafka's convention) are those this worker committed;
    before its first commit on a partition the consumer's fetch position stands in. Partitions whose
    highwater is not known yet (no fetch so far) are skipped. With exactly_once processing the highwater is
    the last stable offset, and a transaction's commit marker takes an offset of its own: an idle partition
    written transactionally may read 1, as in any Kafka lag tool.
    """
    consumer = app.consumer
    committed = app.monitor.tp_committed_offsets
    lags: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        if tp.topic not in topic_names:
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        offset = committed.get(tp)
        if offset is None:
            offset = await consumer.position(tp)
        if offset is not None:
            lags[(tp.topic, tp.partition)] = max(int(highwater) - int(offset), 0)
    return lags


def register(app: faust.App, topics, runtime: Runtime) -> None:
    """Serve `GET /metrics` and refresh the consumer-lag gauge every LAG_INTERVAL_S seconds."""
    metrics = runtime.metrics
    topic_names = {name for f in dataclasses.fields(topics) for name in getattr(topics, f.name).topics}

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    @app.timer(interval=LAG_INTERVAL_S)
    async def refresh_consumer_lag() -> None:
        try:
            lags = await consumer_lag(app, topic_names)
        except Exception:  # consumer not started, or mid-rebalance: keep the last values
            return
        metrics.set_lag(lags)
