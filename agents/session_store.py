"""Where the segment stage keeps each session's `SessionState`: one Faust table and a cache.

``<app>-segment-sessions`` holds, under `tenant/session`, the ids of the latest applied events and the
state *without* its vectors (its header), under `tenant/session` + NUL + event id each buffered
event's float16 vector, written once when the event arrives and deleted when the state drops it (ids
never contain NUL, so the kinds of key cannot meet), and under `tenant/session` + NUL the user the session
belongs to (`Session.admits`), written once, before anything else of the session. A session stored before
owners were kept gets the user of its next event as its owner. Rewriting every vector of the open episode on
each batch made the changelog ~29 kB per write (an episode averages ~30 buffered events); now a write is
its header (~1–2 kB) plus the new vectors.

Writes go vectors first, header second, deletions last, all to one changelog partition (that of the
session's latest event). Kafka keeps one partition's records in order, so any prefix of them that reached
the changelog before a crash is a consistent state (at worst a few orphaned vectors). Headers and vectors
in two tables broke that: their changelogs are different partitions, flushed independently, and a worker
killed between the two left headers whose vectors never arrived.

Decoded states of the sessions this worker owns stay in a bounded LRU cache, so a batch does not read
~30 vectors back from RocksDB per session. The cache is dropped at every rebalance (another worker may
have moved a session on meanwhile), and a state is taken *out* of the cache while a batch works on it
and put back only once it is saved: a batch that fails part way leaves nothing half-applied behind.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import faust

from memstream.models.session_state import SessionState

log = logging.getLogger(__name__)


@dataclass
class Session:
    """One session as a batch works on it."""

    applied: list[str]  # ids of the latest applied events (replays are recognised by them)
    state: SessionState
    stored: set[str] = field(default_factory=set)  # event ids whose vectors are in the table
    owner: str | None = None  # the user the session belongs to (None: no event of any user yet)
    owner_stored: bool = False  # the owner is in the table

    def admits(self, user_id: str) -> bool:
        """Whether an event of `user_id` may go into this session. A session belongs to one user, the user
        of its first event, who becomes its owner here (kept by `SessionStore.save`); the tenant's other
        users may not write into it."""
        if self.owner is None:
            self.owner = user_id
        return self.owner == user_id


def _vector_key(key: bytes, event_id: str) -> bytes:
    return key + b"\0" + event_id.encode()


def _owner_key(key: bytes) -> bytes:
    return key + b"\0"  # the vector key of an empty event id, which cannot exist


class SessionStore:
    def __init__(self, app: faust.App, app_id: str, partitions: int, cache_size: int, dedupe_window: int) -> None:
        self.table = app.Table(f"{app_id}-segment-sessions", partitions=partitions, key_type=bytes, value_type=bytes)
        self._cache: OrderedDict[bytes, tuple[int, Session]] = OrderedDict()
        self._cache_size = cache_size
        self._window = dedupe_window
        self.generation = 0  # bumped at every rebalance; a batch started before one does not fill the cache
        app.on_partitions_revoked.connect(self._invalidate)
        app.on_partitions_assigned.connect(self._invalidate)

    async def _invalidate(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self.generation += 1
        self._cache.clear()

    def load(self, key: bytes) -> Session:
        """The session's state (taken out of the cache: `save` puts it back)."""
        hit = self._cache.pop(key, None)
        if hit is not None and hit[0] == self.generation:
            return hit[1]
        owner_raw = self.table.get(_owner_key(key))
        owner = owner_raw.decode() if owner_raw else None
        raw = self.table.get(key)
        if not raw:
            return Session([], SessionState(), owner=owner, owner_stored=owner is not None)
        ids, _, state_bytes = raw.partition(b"\0")
        from_table: list[bool] = []

        def vectors(event_ids: list[str]) -> bytes | None:
            from_table.append(True)
            rows = [self.table.get(_vector_key(key, i)) for i in event_ids]
            missing = [i for i, row in zip(event_ids, rows) if row is None]
            if missing:  # cannot happen by the write order above; if it does, say so and go on
                log.error(
                    "segment state of %r lacks the vectors of %d of its %d buffered events (%s…): they are "
                    "dropped from segmentation (they stay indexed as events); the session goes on",
                    key,
                    len(missing),
                    len(event_ids),
                    ", ".join(missing[:3]),
                )
                return None
            return b"".join(rows)

        state = SessionState.from_bytes(state_bytes, vectors)
        # a state written with its vectors inline (before this store existed) has none in the table yet
        return Session(
            ids.decode().split("\n") if ids else [],
            state,
            set(state.ids) if from_table else set(),
            owner=owner,
            owner_stored=owner is not None,
        )

    def save(self, key: bytes, session: Session, generation: int) -> None:
        """Write the session back. Call it with the session's latest event as Faust's current event
        (the changelog partition), after every output of the batch was sent."""
        state = session.state
        if session.owner is not None and not session.owner_stored:
            self.table[_owner_key(key)] = session.owner.encode()
            session.owner_stored = True
        for i, event_id in enumerate(state.ids):
            if event_id not in session.stored:
                self.table[_vector_key(key, event_id)] = state.vector_bytes(i)
        session.applied = session.applied[-self._window :]
        self.table[key] = "\n".join(session.applied).encode() + b"\0" + state.to_bytes(vectors=False)
        kept = set(state.ids)
        for event_id in session.stored - kept:
            try:
                del self.table[_vector_key(key, event_id)]
            except KeyError:  # pragma: no cover - already gone
                pass
        session.stored = kept
        if generation == self.generation and self._cache_size:
            self._cache[key] = (generation, session)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
