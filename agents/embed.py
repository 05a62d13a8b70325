"""Stage 2: embed validated interactions in batches and forward event + float32 vector to `embedded`."""

from __future__ import annotations

import time

import faust

from agents.dead_letters import reject
from agents.runtime import Runtime
from streams.codec import InvalidRecord, decode_interaction, encode_with_vector

STAGE = "embed"


def register(app: faust.App, topics, runtime: Runtime) -> None:
    stage = runtime.settings.embed
    metrics = runtime.metrics

    @app.agent(topics.validated, name=f"{runtime.settings.worker.app_id}.embed")
    async def embed(stream: faust.StreamT) -> None:
        async for events in stream.take_events(stage.max_batch, within=stage.max_wait_s):
            metrics.received(STAGE, len(events))
            metrics.batch(STAGE, len(events))
            records, accepted = [], []
            for event in events:
                try:
                    records.append(decode_interaction(event.value))
                    accepted.append(event)
                except InvalidRecord as exc:  # only a foreign writer on an internal topic can cause this
                    await reject(topics, event, exc.reason, STAGE, metrics)
            if not records:
                continue
            started = time.perf_counter()
            vectors = await runtime.embed([r.text for r in records])
            metrics.embedded(time.perf_counter() - started, len(records))
            for record, vector in zip(records, vectors):
                await topics.embedded.send(key=record.key, value=encode_with_vector(record, vector))
            metrics.sent(STAGE, len(records))
