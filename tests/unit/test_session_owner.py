"""Sessions belong to one user (issue 14 part 5, ingest side): the segment stage refuses an event whose
(tenant, session) already belongs to another user of the tenant, across batches, restarts and replays.

The segment agent's per-event steps are replayed here over plain dicts standing in for its Faust table:
load the session (`SessionStore.load`), ask `refused_by_owner`, apply or refuse, save the sessions that
moved on at the end of the batch (`SessionStore.save`)."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from memstream.agents.segment import refused_by_owner
from memstream.agents.session_store import Session, SessionStore
from memstream.models.segmenter import Segmenter
from memstream.streams.contracts import InteractionEvent
from tests.unit.fake_faust import FakeApp


def _event(i: int, tenant: str, session: str, user: str, kind: str = "message") -> InteractionEvent:
    return InteractionEvent(
        event_id=f"e{i}",
        tenant_id=tenant,
        user_id=user,
        session_id=session,
        ts=1_764_000_000.0 + i,
        kind=kind,
        text="" if kind != "message" else f"turn {i}",
    )


def _vector(i: int) -> np.ndarray:
    v = np.random.default_rng(i).normal(size=16).astype(np.float32)
    return v / np.linalg.norm(v)


class SegmentStage:
    """The segment agent's ownership and state steps, batch by batch, over one table that outlives restarts."""

    def __init__(self, cache_size: int) -> None:
        self.app = FakeApp()
        self.cache_size = cache_size
        self.segmenter = Segmenter()
        self.restart()
        self.refused: dict[str, str] = {}  # event id -> dead-letter reason
        self.applied: list[InteractionEvent] = []

    def restart(self) -> None:
        """A new worker (or a rebalance): a fresh store and cache over the same table."""
        self.store = SessionStore(self.app, "a", 4, cache_size=self.cache_size, dedupe_window=512)

    def batch(self, records: list[InteractionEvent], *, crash_before_save: bool = False) -> None:
        sessions: dict[bytes, Session] = {}
        moved: set[bytes] = set()
        for record in records:
            key = record.key
            if key not in sessions:
                sessions[key] = self.store.load(key)
            session = sessions[key]
            reason = refused_by_owner(session, record)
            if reason is not None:
                self.refused[record.event_id] = reason
                continue
            if record.event_id in session.applied:  # a replay: passed on, not applied again
                continue
            session.applied.append(record.event_id)
            if record.kind == "message":
                self.segmenter.push(session.state, record.event_id, record.ts, _vector(int(record.event_id[1:])))
            else:
                self.segmenter.flush(session.state)
            self.applied.append(record)
            moved.add(key)
        if crash_before_save:  # the worker dies before its state is written: the batch will be replayed
            return
        for key in moved:
            self.store.save(key, sessions[key], self.store.generation)


TENANTS = ["t0", "t1"]
SESSIONS = ["s0", "s1", "s2"]
USERS = ["alice", "bob", "carol"]

streams = st.lists(
    st.tuples(st.sampled_from(TENANTS), st.sampled_from(SESSIONS), st.sampled_from(USERS), st.integers(0, 9)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    stream=streams,
    cuts=st.lists(st.integers(1, 8), min_size=1, max_size=30),
    restarts=st.sets(st.integers(0, 30), max_size=6),
    crashes=st.sets(st.integers(0, 30), max_size=4),
    cache_size=st.sampled_from([0, 2, 100]),
)
def test_a_session_takes_events_of_its_first_user_only(stream, cuts, restarts, crashes, cache_size):
    """Shared session ids across users and tenants, cut into batches at random, with restarts between
    batches and crashes before a batch's state was saved (its events come again): an event is refused
    exactly when an earlier event of its (tenant, session) came from another user, with a reason naming
    the session and the refused event's user; every other event is applied once."""
    records = []
    for i, (tenant, session, user, kind) in enumerate(stream):
        # a tenth of the events end their session (control records are owned like messages)
        records.append(_event(i, tenant, session, user, "session_end" if kind == 0 else "message"))
    owners: dict[tuple[str, str], str] = {}
    expected_refused = set()
    for r in records:
        owner = owners.setdefault((r.tenant_id, r.session_id), r.user_id)
        if owner != r.user_id:
            expected_refused.add(r.event_id)

    stage = SegmentStage(cache_size)
    start, b = 0, 0
    while start < len(records):
        size = cuts[b % len(cuts)]
        batch = records[start : start + size]
        if b in restarts:
            stage.restart()
        if b in crashes:
            stage.batch(batch, crash_before_save=True)
            stage.restart()  # the replacement worker reads the same batch again
        stage.batch(batch)
        start += size
        b += 1

    assert set(stage.refused) == expected_refused
    applied_ids = [r.event_id for r in stage.applied]
    kept = [r.event_id for r in records if r.event_id not in expected_refused]
    # crashed batches were applied once before the crash, and again after it: their state was never saved
    assert sorted(set(applied_ids)) == sorted(kept)
    by_session: dict[tuple[str, str], set[str]] = {}
    for r in stage.applied:
        by_session.setdefault((r.tenant_id, r.session_id), set()).add(r.user_id)
    assert all(len(users) == 1 for users in by_session.values()), by_session
    for r in records:
        if r.event_id in expected_refused:
            reason = stage.refused[r.event_id]
            assert f"session {r.session_id!r} of tenant {r.tenant_id!r} belongs to another user" in reason
            assert f"of user {r.user_id!r} refused" in reason
            assert owners[(r.tenant_id, r.session_id)] not in reason  # the owner is not disclosed


def test_the_owner_is_kept_in_the_session_table_and_survives_a_restart():
    stage = SegmentStage(cache_size=0)
    stage.batch([_event(0, "acme", "s1", "alice")])
    table = stage.app.tables["a-segment-sessions"]
    assert table[b"acme/s1\0"] == b"alice"  # beside the session's header and vectors: one changelog
    stage.restart()
    stage.batch([_event(1, "acme", "s1", "bob"), _event(2, "acme", "s1", "alice"), _event(3, "other", "s1", "bob")])
    assert set(stage.refused) == {"e1"}
    assert [r.event_id for r in stage.applied] == ["e0", "e2", "e3"]  # another tenant's s1 is its own session


def test_the_workers_idle_record_is_never_refused_and_claims_nothing():
    stage = SegmentStage(cache_size=0)
    stage.batch([_event(0, "acme", "s1", "alice"), _event(1, "acme", "s1", "bob", kind="session_idle")])
    assert not stage.refused
    fresh = Session([], stage.store.load(b"acme/s2").state)
    assert refused_by_owner(fresh, _event(2, "acme", "s2", "bob", kind="session_idle")) is None
    assert fresh.owner is None


def test_a_session_stored_before_owners_were_kept_is_claimed_by_its_next_event():
    stage = SegmentStage(cache_size=0)
    stage.batch([_event(0, "acme", "s1", "alice")])
    del stage.app.tables["a-segment-sessions"][b"acme/s1\0"]  # what a state written by an older worker lacks
    stage.restart()
    stage.batch([_event(1, "acme", "s1", "bob"), _event(2, "acme", "s1", "alice")])
    assert set(stage.refused) == {"e2"}
