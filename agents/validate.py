"""Stage 1: validate raw interactions; forward the valid, dead-letter the rest, announce receipt."""

from __future__ import annotations

import faust

from agents.dead_letters import reject
from streams.codec import InvalidRecord, decode_interaction, encode
from streams.contracts import MemoryUpdate
from agents.runtime import Runtime

STAGE = "validate"


def register(app: faust.App, topics, runtime: Runtime) -> None:
    settings = runtime.settings
    max_chars = settings.worker.max_text_chars
    metrics = runtime.metrics

    @app.agent(topics.interactions, name=f"{settings.worker.app_id}.validate")
    async def validate(stream: faust.StreamT) -> None:
        async for event in stream.events():
            metrics.received(STAGE)
            try:
                record = decode_interaction(event.value, max_text_chars=max_chars)
            except InvalidRecord as exc:
                await reject(topics, event, exc.reason, STAGE, metrics)
                continue
            await topics.validated.send(key=record.key, value=encode(record))
            metrics.sent(STAGE)
            update = MemoryUpdate.make(
                "event_received", record.tenant_id, [record.event_id], record.ts,
                user_id=record.user_id, session_id=record.session_id,
            )
            await topics.memory_updates.send(key=record.key, value=encode(update))
