"""Stage 1: take raw interactions in batches, dead-letter the invalid ones, announce receipt of the valid
ones, embed them and forward event + float32 vector to `embedded`.

Validation lives here, not in a stage of its own: a separate hop cost every event one more produce, fetch
and dispatch (about a fifth of the pipeline's non-embedding CPU on 2 cores) and ~10 ms of latency, for a
check that takes microseconds.

The embedder is the pipeline's bottleneck, so its thread is kept busy: a batch is embedded in chunks
(``embed.chunk``), two queued on the thread at a time (`agents.runtime.ChunkedEmbedding`); receipts are
announced while the first chunk is embedded, and each chunk is forwarded as soon as it is done while the
next one runs. A recall query's embedding waits behind two chunks at most. Chunks keep arrival order, so
every session's events reach `embedded` in order. The batch's records are acked only after its last chunk
is forwarded.
"""

from __future__ import annotations

import faust

from memstream.agents.dead_letters import reject
from memstream.agents.runtime import Runtime
from memstream.streams.codec import InvalidRecord, decode_interaction, encode
from memstream.streams.contracts import InteractionEvent, MemoryUpdate, UpdateKind
from memstream.streams.frames import encode_with_vector

STAGE = "embed"


def _received(record: InteractionEvent) -> MemoryUpdate:
    return MemoryUpdate.make(
        UpdateKind.EVENT_RECEIVED,
        record.tenant_id,
        [record.event_id],
        record.ts,
        user_id=record.user_id,
        session_id=record.session_id,
    )


def register(app: faust.App, topics, runtime: Runtime) -> None:
    stage = runtime.settings.embed
    max_chars = runtime.settings.worker.max_text_chars
    metrics = runtime.metrics

    @app.agent(topics.interactions, name=f"{runtime.settings.worker.app_id}.embed")
    async def embed(stream: faust.StreamT) -> None:
        async for events in stream.take_events(stage.max_batch, within=stage.max_wait_s):
            metrics.received(STAGE, len(events))
            metrics.batch(STAGE, len(events))
            records: list[InteractionEvent] = []
            for event in events:
                try:
                    records.append(decode_interaction(event.value, max_text_chars=max_chars))
                except InvalidRecord as exc:
                    await reject(topics, event, exc.reason, STAGE, metrics)
            forgotten = await runtime.forgotten()
            kept = [r for r in records if not forgotten.covers(r.tenant_id, r.user_id, r.ts)]
            metrics.forgotten(STAGE, len(records) - len(kept))
            records = kept
            if not records:
                continue
            chunks = runtime.embed_chunks([r.text for r in records], stage.chunk)
            try:
                for record in records:  # accepted: announced while the first chunk is embedded
                    await topics.memory_updates.send(key=record.key, value=encode(_received(record)))
                done = 0
                async for vectors, seconds in chunks:
                    metrics.embedded(seconds, len(vectors))
                    for record, vector in zip(records[done : done + len(vectors)], vectors):
                        await topics.embedded.send(key=record.key, value=encode_with_vector(record, vector))
                    done += len(vectors)
                    metrics.sent(STAGE, len(vectors))
            finally:
                chunks.cancel()  # stopped part way (rebalance, shutdown): skip the chunks not started
