"""Stage 4: write events and episodes to the store, then announce them on `memory-updates`.

Consumes `episodes`, where the segmenter forwards each event ahead of the episode changes it causes.
Writes come before announcements, so a subscriber that reacts to an update can already read it, and an
event is always written before the episode that holds it. Faust acks a batch only once its iteration has
finished, so no offset is committed past an unwritten point. A batch the store refuses for good (bad data,
`agents.retry.Refused`) is dead-lettered with the reason, unannounced, and the stream goes on.
"""

from __future__ import annotations

import faust
import numpy as np

from memstream.agents.dead_letters import reject
from memstream.agents.retry import Refused, until_done
from memstream.agents.runtime import Runtime
from memstream.agents.store import EpisodePoint, EventPoint
from memstream.streams.codec import InvalidRecord, encode
from memstream.streams.contracts import EPISODE_UPDATES, EpisodeRecord, InteractionEvent, MemoryUpdate, UpdateKind
from memstream.streams.frames import decode_frame

STAGE = "index"


def _episode_point(record: EpisodeRecord, centroid: np.ndarray) -> EpisodePoint:
    return EpisodePoint(
        tenant_id=record.tenant_id,
        user_id=record.user_id,
        session_id=record.session_id,
        episode_index=record.episode_index,
        start_ts=record.start_ts,
        end_ts=record.end_ts,
        event_ids=tuple(record.event_ids),
        vector=centroid,
        state="sealed",
    )


def _dated(record: InteractionEvent | EpisodeRecord) -> float:
    """When a record happened, for forgetting: an event's ts, an episode's first event's."""
    return record.ts if isinstance(record, InteractionEvent) else record.start_ts


def _event_update(record: InteractionEvent) -> MemoryUpdate:
    return MemoryUpdate.make(
        UpdateKind.EVENT_INDEXED,
        record.tenant_id,
        [record.event_id],
        record.ts,
        user_id=record.user_id,
        session_id=record.session_id,
    )


def episode_update(record: EpisodeRecord) -> MemoryUpdate:
    """The announcement of an episode change. A sealed episode's update id covers its members: an episode
    sealed again with other members (a divergent replay) is a different update, never mistaken for a
    repeat of the first."""
    return MemoryUpdate.make(
        EPISODE_UPDATES[record.kind],
        record.tenant_id,
        [f"{record.session_id}#{record.episode_index}"],
        record.end_ts,
        salt="|".join(record.event_ids) if record.kind == "sealed" else "",
        user_id=record.user_id,
        session_id=record.session_id,
        payload={
            "episode_index": record.episode_index,
            "event_ids": record.event_ids,
            "start_ts": record.start_ts,
            "end_ts": record.end_ts,
        },
    )


def register(app: faust.App, topics, runtime: Runtime) -> None:
    settings = runtime.settings
    metrics = runtime.metrics

    @app.agent(topics.episodes, name=f"{settings.worker.app_id}.index")
    async def index(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.store.upsert_batch, within=settings.index.max_wait_s):
            metrics.received(STAGE, len(events))
            metrics.batch(STAGE, len(events))
            decoded = []
            for event in events:
                try:
                    decoded.append((event, *decode_frame(event.value)))
                except InvalidRecord as exc:
                    await reject(topics, event, exc.reason, STAGE, metrics)
            forgotten = await runtime.forgotten()
            kept = [(e, r, v) for e, r, v in decoded if not forgotten.covers(r.tenant_id, r.user_id, _dated(r))]
            metrics.forgotten(STAGE, len(decoded) - len(kept))
            decoded = kept
            event_points = [EventPoint.from_event(r, v) for _, r, v in decoded if isinstance(r, InteractionEvent)]
            episode_points = [
                _episode_point(r, v) for _, r, v in decoded if isinstance(r, EpisodeRecord) and r.kind == "sealed"
            ]

            async def write() -> None:
                store = await runtime.stage_store()
                if event_points:  # events first: an episode is never stored before its events
                    with metrics.store_timer("upsert_events"):  # a replayed sealed member keeps its episode
                        await store.add_events(event_points)
                if episode_points:  # an opened episode has no centroid yet: announced, not stored
                    with metrics.store_timer("episode_context"):  # members first: index and context vectors
                        await store.apply_episode_context(episode_points, settings.recall.context_beta)
                    with metrics.store_timer("upsert_episodes"):
                        await store.upsert_episodes(episode_points)

            if event_points or episode_points:
                try:
                    await until_done(write, f"writing {len(event_points)} events, {len(episode_points)} episodes")
                except Refused as exc:  # bad data: the batch goes to dead-letters, unannounced; the stream goes on
                    for event, _, _ in decoded:
                        await reject(topics, event, f"store refused the batch: {exc}", STAGE, metrics)
                    metrics.refused(STAGE, len(decoded))
                    continue
            for _, record, _ in decoded:
                update = _event_update(record) if isinstance(record, InteractionEvent) else episode_update(record)
                await topics.memory_updates.send(key=record.key, value=encode(update))
            metrics.sent(STAGE, len(decoded))
