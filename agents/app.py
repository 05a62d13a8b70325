"""The Faust app factory: one app per worker process, with the agents of the stages it runs."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TopicT

from memstream.agents.faust_compat import App
from memstream.agents.settings import Settings, get_settings

STAGES = ("embed", "segment", "index", "errors", "web", "metrics")
"""Agent modules under ``agents/`` a worker runs by default, in pipeline order."""


@dataclass(frozen=True)
class Topics:
    """The Faust topic objects of one app (raw bytes in and out: our codec does the rest)."""

    interactions: TopicT
    embedded: TopicT
    episodes: TopicT
    feedback: TopicT
    memory_updates: TopicT
    dead_letters: TopicT


def _credentials(settings: Settings) -> Any:
    kafka = settings.kafka
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism,
            ssl_context=kafka.ssl_context(),
        )
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(kafka.ssl_context())
    return None


def _topics(app: faust.App, settings: Settings) -> Topics:
    names = settings.topics
    parts = settings.kafka.partitions

    def topic(name: str) -> TopicT:
        return app.topic(
            name, partitions=parts, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    return Topics(
        interactions=topic(names.interactions),
        embedded=topic(names.embedded),
        episodes=topic(names.episodes),
        feedback=topic(names.feedback),
        memory_updates=topic(names.memory_updates),
        dead_letters=topic(names.dead_letters),
    )


def create_app(settings: Settings | None = None, *, stages: tuple[str, ...] | None = None) -> faust.App:
    """Build a Faust app wired with the agents of `stages` (default: all of STAGES)."""
    settings = settings or get_settings()
    worker = settings.worker
    worker.state_dir.mkdir(parents=True, exist_ok=True)
    app = App(
        worker.app_id,
        broker=[f"kafka://{host}" for host in settings.kafka.bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store=worker.table_store,
        datadir=str(worker.state_dir),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        table_standby_replicas=worker.standby_replicas,
        key_serializer="raw",
        value_serializer="raw",
        web_port=worker.web_port,
        web_bind=worker.web_host,
        web_host=worker.web_host,
        # Faust's own routes (/router/, /table/, /stats/, /graph/) expose internals without credentials: off.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_application_options={"client_max_size": settings.http.max_body_bytes},
        producer_acks=-1,
        processing_guarantee=worker.processing_guarantee,
        broker_commit_interval=worker.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        producer_linger=settings.kafka.producer_linger_ms / 1000,
    )
    topics = _topics(app, settings)
    from memstream.agents.runtime import Runtime

    runtime = Runtime(settings)
    app.memstream_runtime = runtime  # the worker's shared resources, for tests and tools that hold the app
    for stage in stages or STAGES:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
        importlib.import_module(f"memstream.agents.{stage}").register(app, topics, runtime)
    return app
