"""Stage 4: write events and episodes to the store, then announce them on `memory-updates`.

Writes come before announcements, so a subscriber that reacts to an update can already read it. Offsets
are committed only after the batch's writes returned (Faust acks an event once its iteration ends).
"""

from __future__ import annotations

import faust

from agents.dead_letters import reject
from agents.runtime import Runtime
from agents.store import EpisodePoint, EventPoint
from streams.codec import InvalidRecord, decode_with_vector, encode
from streams.contracts import CONTROL_KINDS, EpisodeRecord, InteractionEvent, MemoryUpdate

STAGE = "index"


def register(app: faust.App, topics, runtime: Runtime) -> None:
    settings = runtime.settings
    app_id = settings.worker.app_id

    @app.agent(topics.embedded, name=f"{app_id}.index-events")
    async def index_events(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.store.upsert_batch, within=settings.embed.max_wait_s):
            records: list[InteractionEvent] = []
            points: list[EventPoint] = []
            for event in events:
                try:
                    record, vector = decode_with_vector(event.value, InteractionEvent)
                except (InvalidRecord, ValueError) as exc:
                    await reject(topics, event, f"undecodable embedded record: {exc}", STAGE)
                    continue
                if record.kind in CONTROL_KINDS:
                    continue
                records.append(record)
                points.append(EventPoint(
                    tenant_id=record.tenant_id, user_id=record.user_id, session_id=record.session_id,
                    event_id=record.event_id, ts=record.ts, text=record.text, vector=vector,
                    role=record.role, kind=record.kind, attributes=record.attributes,
                ))
            if not points:
                continue
            store = await runtime.store()
            await store.upsert_events(points)
            for record in records:
                update = MemoryUpdate.make(
                    "event_indexed", record.tenant_id, [record.event_id], record.ts,
                    user_id=record.user_id, session_id=record.session_id,
                )
                await topics.memory_updates.send(key=record.key, value=encode(update))

    @app.agent(topics.episodes, name=f"{app_id}.index-episodes")
    async def index_episodes(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                record, centroid = decode_with_vector(event.value, EpisodeRecord)
            except (InvalidRecord, ValueError) as exc:
                await reject(topics, event, f"undecodable episode record: {exc}", STAGE)
                continue
            store = await runtime.store()
            point = EpisodePoint(
                tenant_id=record.tenant_id, user_id=record.user_id, session_id=record.session_id,
                episode_index=record.episode_index, start_ts=record.start_ts, end_ts=record.end_ts,
                event_ids=tuple(record.event_ids), vector=centroid if centroid.size else None,
                state=record.kind,
            )
            if record.kind == "sealed":  # an opened episode has no centroid yet: announced, not stored
                await store.upsert_episodes([point])
            update = MemoryUpdate.make(
                f"episode_{record.kind}", record.tenant_id, [f"{record.session_id}#{record.episode_index}"],
                record.end_ts, user_id=record.user_id, session_id=record.session_id,
                payload={"episode_index": record.episode_index, "event_ids": record.event_ids,
                         "start_ts": record.start_ts, "end_ts": record.end_ts},
            )
            await topics.memory_updates.send(key=record.key, value=encode(update))
