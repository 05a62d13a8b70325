"""Stage 3: cut each session's embedded events into episodes (models.segmenter), state in a Faust table.

Events come in batches (``segment.max_batch`` / ``max_wait_s``, several sessions each). Every event is
forwarded to `episodes` (for the index stage) ahead of the episode changes it causes; each session's state
is written once per batch, after all of the batch's outputs. With ``segmentation.surprise`` ``lm`` or
``blend`` the batch's texts are scored by the language model in one run, in the LM's own thread.

Replays are harmless: the ids of each session's latest ``dedupe_window`` applied events are kept in the
same table value as the session state (written after the stage's outputs), and an event seen again is
passed on to the index stage (idempotent writes) but never applied to the session state twice. The
states live in Faust tables (`agents.session_store`: RocksDB + changelog, so a restarted or rebalanced
worker resumes every session, each event's vector stored once); a state is bounded by
``segmentation.state_bound`` vectors. A session's
episodes are sealed by the look-ahead, by a `session_end` event, or after `idle_seal_s` idle seconds
(the worker then sends itself a `session_idle` control record on the session's partition, so every
state change happens in order inside the stream).

A session belongs to one user, the user of its first event: an event of another user of the tenant under
the same session id is dead-lettered with the reason, never applied nor indexed (`refused_by_owner`).
"""

from __future__ import annotations

import time

import faust
import numpy as np

from memstream.agents.dead_letters import reject
from memstream.agents.faust_compat import as_current_event
from memstream.agents.metrics import new_scores
from memstream.agents.runtime import Runtime
from memstream.agents.session_store import Session, SessionStore
from memstream.models.segmenter import EpisodeChange, Segmenter
from memstream.streams.codec import InvalidRecord
from memstream.streams.contracts import CONTROL_KINDS, EpisodeRecord, InteractionEvent
from memstream.streams.frames import decode_with_vector, encode_with_vector

STAGE = "segment"


def _episode_record(change: EpisodeChange, event: InteractionEvent) -> EpisodeRecord:
    return EpisodeRecord(
        kind=change.kind,
        tenant_id=event.tenant_id,
        user_id=event.user_id,
        session_id=event.session_id,
        episode_index=change.episode_index,
        event_ids=list(change.event_ids),
        start_ts=change.start_ts,
        end_ts=change.end_ts,
    )


def refused_by_owner(session: Session, record: InteractionEvent) -> str | None:
    """Why `record` may not go into `session` (a dead-letter reason), or None. A session belongs to the
    user of its first event: an event of another user of the tenant under the same session id is refused
    (its memory would be mixed into that user's episodes). The worker's own `session_idle` records are
    exempt: they carry the user of the session's latest event."""
    if record.kind == "session_idle" or session.admits(record.user_id):
        return None
    return (
        f"session {record.session_id!r} of tenant {record.tenant_id!r} belongs to another user: "
        f"event {record.event_id!r} of user {record.user_id!r} refused"
    )


def register(app: faust.App, topics, runtime: Runtime) -> None:
    settings = runtime.settings
    segmenter = Segmenter(settings.segmentation, lm=runtime.language_model)  # the LM loads on first use only
    metrics = runtime.metrics
    app_id = settings.worker.app_id
    stage = settings.segment
    store = SessionStore(app, app_id, settings.kafka.partitions, stage.state_cache, stage.dedupe_window)
    # tenant/session -> "<wall-clock seconds of last event>|<user_id>|<open episode events>"
    activity = app.Table(
        f"{app_id}-segment-activity",
        partitions=settings.kafka.partitions,
        key_type=bytes,
        value_type=bytes,
    )
    empty = np.zeros(0, np.float32)

    @app.agent(topics.embedded, name=f"{app_id}.segment")
    async def segment(stream: faust.StreamT) -> None:
        async for events in stream.take_events(stage.max_batch, within=stage.max_wait_s):
            metrics.received(STAGE, len(events))
            metrics.batch(STAGE, len(events))
            generation = store.generation
            sessions_now: dict[bytes, Session] = {}  # this batch's sessions, loaded once
            replayed: dict[bytes, tuple[faust.EventT, InteractionEvent]] = {}
            todo: list[tuple[faust.EventT, InteractionEvent, np.ndarray]] = []
            for event in events:
                try:
                    record, vector = decode_with_vector(event.value, InteractionEvent)
                except InvalidRecord as exc:
                    await reject(topics, event, f"undecodable embedded record: {exc}", STAGE, metrics)
                    continue
                key = record.key
                if key not in sessions_now:
                    sessions_now[key] = store.load(key)
                refusal = refused_by_owner(sessions_now[key], record)
                if refusal is not None:  # another user's session: never applied, never indexed
                    await reject(topics, event, refusal, STAGE, metrics)
                    continue
                applied = sessions_now[key].applied
                if record.event_id in applied:  # a replay (at-least-once): state has it; pass it on, never re-apply it
                    replayed[key] = (event, record)
                    if record.kind not in CONTROL_KINDS:
                        await topics.episodes.send(key=key, value=event.value)
                    continue
                applied.append(record.event_id)
                todo.append((event, record, vector))
            surprises: list[float | None] = [None] * len(todo)
            if segmenter.config.uses_lm:  # one language-model run for every session's new events, in its thread
                lm_rows = [i for i, (_, r, _) in enumerate(todo) if r.kind not in CONTROL_KINDS]
                scored = await runtime.lm_surprises(
                    segmenter, [(sessions_now[todo[i][1].key].state, todo[i][1].text) for i in lm_rows]
                )
                for i, value in zip(lm_rows, scored):
                    surprises[i] = value
            for (event, record, vector), surprise in zip(todo, surprises):
                key = record.key
                state = sessions_now[key].state
                if record.kind in CONTROL_KINDS:
                    changes = segmenter.flush(state)
                else:
                    cursor = state.cursor
                    changes = segmenter.push(
                        state, record.event_id, record.ts, vector, record.text, lm_surprise=surprise
                    )
                    metrics.scores(new_scores(state, cursor))
                    # the event itself goes on to be indexed, before its episode
                    await topics.episodes.send(key=key, value=event.value)
                    metrics.sent(STAGE)
                for change in changes:  # delivered before the state moves on: a crash replays, never loses, them
                    centroid = change.centroid if change.centroid is not None else empty
                    frame = encode_with_vector(_episode_record(change, record), centroid)
                    await (await topics.episodes.send(key=key, value=frame))
                    metrics.episode(change.kind, len(change.event_ids))
            now = time.time()
            latest = {record.key: (event, record) for event, record, _ in todo}  # sessions moved on, latest event
            # State last, once per session and batch. The activity is written for replayed sessions too: a
            # replay means the worker before stopped after some of its writes, and the state (one changelog)
            # may have reached Kafka and the activity (another) not; idle sealing would never see the session.
            for key, (event, record) in {**replayed, **latest}.items():
                session = sessions_now[key]
                open_events = len(session.state) if record.kind not in CONTROL_KINDS else 0
                with as_current_event(event):
                    if key in latest:
                        store.save(key, session, generation)
                    activity[key] = f"{now:.3f}|{record.user_id}|{open_events}".encode()

    @app.timer(interval=settings.segment.idle_check_s)
    async def seal_idle_sessions() -> None:
        now = time.time()
        for key, value in list(activity.items()):
            seen_at, user_id, open_events = value.decode().split("|")
            if int(open_events) == 0 or now - float(seen_at) < settings.segment.idle_seal_s:
                continue
            tenant_id, session_id = key.decode().split("/", 1)
            control = InteractionEvent(
                event_id=f"idle-{int(now)}",
                tenant_id=tenant_id,
                user_id=user_id,
                session_id=session_id,
                ts=now,
                kind="session_idle",
                role="system",
                text="",
            )
            await topics.embedded.send(key=key, value=encode_with_vector(control, empty))
