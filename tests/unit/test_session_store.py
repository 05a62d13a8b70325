"""The segment stage's session store, over plain dicts standing in for Faust tables."""

from __future__ import annotations

import numpy as np

from memstream.agents.session_store import Session, SessionStore
from memstream.models.segmenter import Segmenter
from memstream.models.session_state import SessionState
from tests.unit.fake_faust import FakeApp


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 16))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _store(app: FakeApp, cache_size: int = 0) -> SessionStore:
    return SessionStore(app, "a", 4, cache_size=cache_size, dedupe_window=8)


def _push(seg: Segmenter, session: Session, start: int, n: int) -> None:
    for i, v in enumerate(_vectors(n, seed=start), start=start):
        seg.push(session.state, f"e{i}", float(i), v)
        session.applied.append(f"e{i}")


def test_a_state_survives_a_restart_with_each_vector_stored_once() -> None:
    app, seg, key = FakeApp(), Segmenter(), b"t/s"
    store = _store(app)
    session = store.load(key)
    _push(seg, session, 0, 40)
    store.save(key, session, store.generation)
    table = app.tables["a-segment-sessions"]  # header and vectors in one table: one changelog, in order
    assert list(app.tables) == ["a-segment-sessions"]
    assert sorted(table) == sorted([key] + [key + b"\0" + i.encode() for i in session.state.ids])
    assert len(table[key]) < len(session.state.to_bytes())
    assert session.applied == [f"e{i}" for i in range(32, 40)]  # the dedupe window

    restarted = _store(app).load(key)
    assert restarted.state.to_bytes() == session.state.to_bytes()
    assert restarted.applied == session.applied and restarted.stored == set(session.state.ids)

    _push(seg, restarted, 40, 60)  # events leave the state: their vectors leave the table
    _store(app).save(key, restarted, 0)
    assert sorted(table) == sorted([key] + [key + b"\0" + i.encode() for i in restarted.state.ids])


def test_cached_states_are_taken_out_while_in_use_and_dropped_at_a_rebalance() -> None:
    app, seg, key = FakeApp(), Segmenter(), b"t/s"
    store = _store(app, cache_size=2)
    session = store.load(key)
    _push(seg, session, 0, 10)
    store.save(key, session, store.generation)
    assert store.load(key) is session  # from the cache, not decoded again
    assert store.load(key) is not session  # taken out: a failed batch leaves no half-applied state behind
    store.save(key, session, store.generation)
    app.on_partitions_revoked.send()
    assert store.load(key) is not session  # read back from the tables after the rebalance
    started = store.generation
    app.on_partitions_assigned.send()
    store.save(key, session, started)  # a batch begun before the rebalance does not fill the cache
    assert store.load(key) is not session


def test_a_state_stored_with_inline_vectors_moves_them_out_of_its_header() -> None:
    app, seg, key = FakeApp(), Segmenter(), b"t/s"
    state = SessionState()
    for i, v in enumerate(_vectors(12)):
        seg.push(state, f"e{i}", float(i), v)
    app.tables["a-segment-sessions"] = {key: b"e11\0" + state.to_bytes()}  # the format before the store
    store = _store(app)
    session = store.load(key)
    assert session.stored == set() and session.state.to_bytes() == state.to_bytes()
    store.save(key, session, store.generation)
    assert len(app.tables["a-segment-sessions"]) == 1 + len(state.ids)
    assert len(app.tables["a-segment-sessions"][key]) < len(state.to_bytes())


def test_a_state_whose_vectors_were_lost_goes_on_with_nothing_buffered(caplog) -> None:
    app, seg, key = FakeApp(), Segmenter(), b"t/s"
    store = _store(app)
    session = store.load(key)
    _push(seg, session, 0, 12)
    store.save(key, session, store.generation)
    episode, seen = session.state.episode_index, session.state.seen
    del app.tables["a-segment-sessions"][key + b"\0e11"]  # a write that never reached the changelog

    loaded = _store(app).load(key)
    assert "lacks the vectors of 1 of its" in caplog.text
    assert len(loaded.state) == 0 and loaded.state.seen == seen and loaded.applied == session.applied
    changes = seg.push(loaded.state, "e12", 12.0, _vectors(1, seed=99)[0])
    assert [(c.kind, c.episode_index, c.event_ids) for c in changes] == [("opened", episode + 1, ["e12"])]
