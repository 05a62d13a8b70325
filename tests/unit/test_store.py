"""Contract tests of the memory store: the same suite runs against both backends.

edge: qdrant-edge on a temporary directory; server: the AsyncQdrantClient code path against
qdrant-client's local mode (``location=":memory:"``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import AsyncQdrantClient

from memstream.agents.store import (
    EVENT_FIELDS,
    Collection,
    EdgeStore,
    EpisodePoint,
    ErrorPoint,
    EventPoint,
    MemoryStore,
    ServerStore,
    StoreClosedError,
    StoreConfig,
    StoreError,
    StoreLockedError,
    episode_point_id,
    event_point_id,
    make_store,
)
from memstream.agents.store.ids import _point_id, reference_point_id
from memstream.agents.store.schema import from_payload, to_payload
from memstream.streams.contracts import InteractionEvent
from tests.unit.stores import BACKENDS, backend_store, empty_edge_template, fresh_store

DIM = 16


def unit(rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def make(backend: str, path: Path, **overrides: object) -> MemoryStore:
    return backend_store(backend, path, DIM, **overrides)


@pytest.fixture(scope="session")
def empty_edge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed, empty edge store; creating shards and indexes costs ~2 s (fsyncs), copying it does not."""
    return empty_edge_template(tmp_path_factory.mktemp("template") / "edge", DIM)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path, empty_edge: Path):
    s = fresh_store(request.param, tmp_path, empty_edge, DIM)
    await s.open()
    yield s
    await s.close()


@pytest.fixture(scope="module", params=BACKENDS)
def long_lived(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, empty_edge: Path):
    """One store per backend on its own loop, shared by the property test's examples."""
    path = tmp_path_factory.mktemp("shared") / "edge"
    shutil.copytree(empty_edge, path)
    loop = asyncio.new_event_loop()
    s = make(request.param, path)
    loop.run_until_complete(s.open())
    yield loop, s
    loop.run_until_complete(s.close())
    loop.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def event(tenant: str, user: str, session: str, event_id: str, ts: float, vec, **kw) -> EventPoint:
    return EventPoint(tenant, user, session, event_id, ts, f"text of {event_id}", vec, **kw)


def episode(tenant: str, user: str, session: str, index: int, vec, start: float | None = None, **kw) -> EpisodePoint:
    start = float(index * 10) if start is None else start
    ids = tuple(f"{session}-e{index}-{j}" for j in range(2))
    return EpisodePoint(tenant, user, session, index, start, start + 5.0, ids, vec, **kw)


def error(tenant: str, user: str, event_id: str, vec, version: str = "v1", ts: float = 0.0) -> ErrorPoint:
    return ErrorPoint(tenant, user, "item", event_id, version, 1.0, 0.25, ts, vec)


# -- ids ---------------------------------------------------------------------------------------------------


def test_point_ids_are_deterministic_and_scoped():
    assert event_point_id("t", "e1") == event_point_id("t", "e1")
    assert event_point_id("t", "e1") != event_point_id("u", "e1")
    assert episode_point_id("t", "s", 3) == episode_point_id("t", "s", 3)
    assert episode_point_id("t", "s", 3) != episode_point_id("t", "s", 4)
    # no ambiguity from separators inside ids
    assert episode_point_id("a", "b1", 2) != episode_point_id("ab", "1", 2)


@given(parts=st.lists(st.one_of(st.text(), st.integers(0, 10**6)), min_size=1, max_size=4))
def test_point_id_matches_its_definition(parts):
    """The fast path must give exactly uuid5(MEMSTREAM_NS, json.dumps(parts)): ids are persisted."""
    try:
        expected = reference_point_id(*parts)
    except UnicodeEncodeError:  # lone surrogates cannot be ids in either version
        return
    assert _point_id(*parts) == expected


def test_make_store_picks_backend(tmp_path: Path):
    assert isinstance(make_store(StoreConfig(path=tmp_path)), EdgeStore)
    assert isinstance(make_store(StoreConfig(backend="server", url="http://localhost:6333")), ServerStore)
    assert StoreConfig().edge_path("/srv/state") == Path("/srv/state/qdrant-edge")


# -- writes and reads -------------------------------------------------------------------------------------


async def test_search_events_best_first_and_tenant_scoped(store: MemoryStore, rng):
    vecs = [unit(rng) for _ in range(6)]
    await store.upsert_events([event("t1", "u", "s", f"e{i}", i, v) for i, v in enumerate(vecs)])
    await store.upsert_events([event("t2", "u", "s", f"e{i}", i, v) for i, v in enumerate(vecs)])
    hits = await store.search_events(vecs[3], tenant_id="t1", limit=3)
    assert [h.event.event_id for h in hits][0] == "e3"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(h.event.tenant_id == "t1" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert await store.count(Collection.EVENTS, "t1") == 6
    assert await store.count("events") == 12


async def test_replay_overwrites_never_duplicates(store: MemoryStore, rng):
    v = unit(rng)
    await store.upsert_events([event("t", "u", "s", "e1", 1.0, v)])
    await store.upsert_events([EventPoint("t", "u", "s", "e1", 1.0, "edited", v, episode_index=4)])
    assert await store.count("events", "t") == 1
    (got,) = await store.events_by_ids("t", ["e1"])
    assert got.text == "edited" and got.episode_index == 4
    await store.upsert_episodes([episode("t", "u", "s", 0, v), episode("t", "u", "s", 0, v, state="sealed")])
    assert await store.count("episodes", "t") == 1
    assert (await store.episodes_by_index("t", "s", [0]))[0].state == "sealed"


async def test_a_replayed_event_keeps_its_sealed_episode(store: MemoryStore, rng):
    """The index stage writes arriving events with add_events: an event seen again after its episode's seal
    was applied (a replay) must not lose the episode index and context vectors the seal gave it."""
    members = [event("t", "u", "s", f"s-e0-{j}", float(j), unit(rng)) for j in range(2)]
    assert await store.add_events(members) == 2
    sealed = episode("t", "u", "s", 0, unit(rng), state="sealed")
    assert await store.apply_episode_context([sealed], 0.5) == 2
    before = await store.events_by_ids("t", [m.event_id for m in members], with_vectors=True)
    assert [e.episode_index for e in before] == [0, 0]

    later = event("t", "u", "s", "s-e1-0", 3.0, unit(rng))
    assert await store.add_events([*members, later]) == 1  # the replayed members are left as they are
    after = await store.events_by_ids("t", [m.event_id for m in members], with_vectors=True)
    assert [e.episode_index for e in after] == [0, 0]
    assert [e.episode_index for e in await store.events_by_ids("t", ["s-e1-0"])] == [None]
    await store.upsert_events(members)  # what the index stage did before: the seal's work is undone
    assert [e.episode_index for e in await store.events_by_ids("t", [m.event_id for m in members])] == [None, None]


async def test_event_fields_round_trip(store: MemoryStore, rng):
    v = unit(rng)
    e = EventPoint(
        "t",
        "u",
        "s",
        "e1",
        12.5,
        "hello",
        v,
        episode_index=None,
        role="assistant",
        kind="tool_call",
        attributes={"lang": "en", "n": 3, "ok": True, "x": None},
    )
    await store.upsert_events([e])
    (got,) = await store.events_by_ids("t", ["e1"], with_vectors=True)
    assert got == e  # vectors are not compared
    np.testing.assert_allclose(got.vector, v, atol=1e-5)  # unit vectors come back as stored


def test_an_event_point_keeps_the_contracts_fields():
    """EVENT_FIELDS is the contract's list; an event's way into a point, a payload and back loses none."""
    assert set(EVENT_FIELDS) == set(InteractionEvent.model_fields) - {"schema_version"}
    assert set(EVENT_FIELDS) <= {f.name for f in dataclasses.fields(EventPoint)}
    event = InteractionEvent(
        event_id="e1",
        tenant_id="t",
        user_id="u",
        session_id="s",
        ts=2.5,
        role="tool",
        kind="tool_call",
        text="hi",
        attributes={"n": 1, "ok": True},
    )
    point = EventPoint.from_event(event, np.ones(DIM, np.float32), episode_index=3)
    assert point.event_fields() == event.model_dump(exclude={"schema_version"})
    assert InteractionEvent.model_validate(point.event_fields()) == event
    payload = to_payload(point)
    assert payload == point.event_fields() | {"episode_index": 3}
    assert from_payload(Collection.EVENTS, payload) == point


async def test_search_episodes_filters(store: MemoryStore, rng):
    q = unit(rng)
    await store.upsert_episodes(
        [
            episode("t", "alice", "s1", 0, q, start=0.0),  # [0, 5]
            episode("t", "alice", "s1", 1, q, start=10.0),  # [10, 15]
            episode("t", "bob", "s2", 0, q, start=20.0),  # [20, 25]
            episode("t2", "alice", "s1", 0, q, start=0.0),
        ]
    )

    async def keys(**kw):
        hits = await store.search_episodes(q, tenant_id="t", limit=10, **kw)
        return sorted((h.episode.session_id, h.episode.episode_index) for h in hits)

    assert await keys() == [("s1", 0), ("s1", 1), ("s2", 0)]
    assert await keys(user_id="alice") == [("s1", 0), ("s1", 1)]
    assert await keys(session_id="s2") == [("s2", 0)]
    assert await keys(since=12.0) == [("s1", 1), ("s2", 0)]  # overlap: end_ts >= since
    assert await keys(until=12.0) == [("s1", 0), ("s1", 1)]  # start_ts <= until
    assert await keys(since=4.0, until=11.0) == [("s1", 0), ("s1", 1)]
    assert await keys(since=16.0, until=19.0) == []


async def test_episodes_by_index(store: MemoryStore, rng):
    await store.upsert_episodes([episode("t", "u", "s", i, unit(rng)) for i in range(5)])
    await store.upsert_episodes([episode("t", "u", "other", i, unit(rng)) for i in range(5)])
    await store.upsert_episodes([episode("t2", "u", "s", i, unit(rng)) for i in range(5)])
    got = await store.episodes_by_index("t", "s", [4, 1, 1, 9])
    assert [(e.tenant_id, e.session_id, e.episode_index) for e in got] == [("t", "s", 1), ("t", "s", 4)]
    assert await store.episodes_by_index("t", "s", []) == []
    (with_vec,) = await store.episodes_by_index("t", "s", [2], with_vectors=True)
    assert with_vec.vector is not None and len(with_vec.vector) == DIM
    got = await store.episodes_by_keys("t", [("other", 3), ("s", 0), ("s", 0), ("s", 7), ("nope", 1)])
    assert [(e.tenant_id, e.session_id, e.episode_index) for e in got] == [("t", "other", 3), ("t", "s", 0)]
    assert await store.episodes_by_keys("t", []) == []


async def test_events_by_ids_keeps_requested_order_and_tenant(store: MemoryStore, rng):
    await store.upsert_events([event("t", "u", "s", f"e{i}", i, unit(rng)) for i in range(5)])
    await store.upsert_events([event("t2", "u", "s", "only-t2", 0, unit(rng))])
    got = await store.events_by_ids("t", ["e3", "missing", "e0", "only-t2", "e3"])
    assert [e.event_id for e in got] == ["e3", "e0"]
    assert await store.events_by_ids("t", []) == []


# -- error memory ------------------------------------------------------------------------------------------


async def test_search_errors_by_model_version(store: MemoryStore, rng):
    q = unit(rng)
    await store.upsert_errors([error("t", "u", f"f{i}", q, "v1" if i < 3 else "v2") for i in range(5)])
    await store.upsert_errors([error("t2", "u", "x", q, "v1")])
    v1 = await store.search_errors(q, tenant_id="t", model_version="v1", limit=10)
    assert sorted(h.error.event_id for h in v1) == ["f0", "f1", "f2"]
    assert all(h.error.label == 1.0 and h.error.prediction == 0.25 for h in v1)
    assert len(await store.search_errors(q, tenant_id="t", model_version=None, limit=10)) == 5
    far = -q
    assert await store.search_errors(far, tenant_id="t", model_version=None, limit=10, score_threshold=0.5) == []


async def test_delete_errors_criteria(store: MemoryStore, rng):
    await store.upsert_errors(
        [error("t", "u", f"f{i}", unit(rng), "v1" if i < 4 else "v2", ts=float(i)) for i in range(8)]
    )
    await store.upsert_errors([error("t2", "u", f"f{i}", unit(rng), "v1", ts=float(i)) for i in range(8)])
    assert await store.delete_errors("t", event_ids=["f0", "nope"]) == 1
    assert await store.delete_errors("t", before=2.0) == 1  # f1 (f0 already gone)
    assert await store.delete_errors("t", except_model_version="v2") == 2  # f2, f3
    assert await store.delete_errors("t", event_ids=[]) == 0
    assert await store.count("errors", "t") == 4
    assert await store.delete_errors("t") == 4  # no criterion: all of the tenant's
    assert await store.count("errors", "t2") == 8


async def test_trim_errors_keeps_newest(store: MemoryStore, rng):
    ts = [5.0, 1.0, 9.0, 3.0, 7.0]
    await store.upsert_errors([error("t", "u", f"f{i}", unit(rng), ts=t) for i, t in enumerate(ts)])
    await store.upsert_errors([error("t2", "u", "old", unit(rng), ts=0.0)])
    assert await store.trim_errors("t", 2) == 3
    left = await store.search_errors(unit(rng), tenant_id="t", model_version=None, limit=10)
    assert sorted(h.error.ts for h in left) == [7.0, 9.0]
    assert await store.trim_errors("t", 10) == 0
    assert await store.count("errors", "t2") == 1


# -- forget ------------------------------------------------------------------------------------------------


async def test_forget_removes_user_everywhere(store: MemoryStore, rng):
    for tenant in ("t", "t2"):
        for user in ("alice", "bob"):
            await store.upsert_events(
                [event(tenant, user, f"{user}-s", f"{user}-e{i}", i, unit(rng)) for i in range(3)]
            )
            await store.upsert_episodes([episode(tenant, user, f"{user}-s", i, unit(rng)) for i in range(2)])
            await store.upsert_errors([error(tenant, user, f"{user}-f{i}", unit(rng)) for i in range(4)])
    assert await store.forget("t", "alice") == 3 + 2 + 4
    assert await store.forget("t", "alice") == 0
    for c, n in (("events", 3), ("episodes", 2), ("errors", 4)):
        assert await store.count(c, "t") == n  # bob's
        assert await store.count(c, "t2") == 2 * n
    assert await store.search_events(unit(rng), tenant_id="t", user_id="alice", limit=10) == []


# -- misuse ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["", None])
async def test_tenant_is_required(store: MemoryStore, rng, tenant):
    q = unit(rng)
    calls = [
        store.search_events(q, tenant_id=tenant),
        store.search_episodes(q, tenant_id=tenant),
        store.search_errors(q, tenant_id=tenant, model_version=None),
        store.episodes_by_index(tenant, "s", [1]),
        store.episodes_by_index(tenant, "s", []),
        store.episodes_by_keys(tenant, [("s", 1)]),
        store.episodes_by_keys(tenant, []),
        store.events_by_ids(tenant, ["e"]),
        store.events_by_ids(tenant, []),
        store.delete_errors(tenant),
        store.trim_errors(tenant, 1),
        store.forget(tenant, "u"),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            await call


async def test_bad_vectors_are_refused(store: MemoryStore, rng):
    with pytest.raises(ValueError):
        await store.upsert_events([event("t", "u", "s", "e", 0, np.ones(DIM + 1))])
    with pytest.raises(ValueError):
        await store.upsert_events([EventPoint("t", "u", "s", "e", 0, "no vector")])
    with pytest.raises(ValueError):
        await store.upsert_events([event("t", "u", "s", "e", 0, np.full(DIM, np.nan))])
    with pytest.raises(ValueError):
        await store.search_events(np.ones(DIM - 1), tenant_id="t")
    assert await store.count("events") == 0


@pytest.mark.parametrize("backend", BACKENDS)
async def test_large_upserts_are_chunked(backend, tmp_path, rng, empty_edge):
    shutil.copytree(empty_edge, tmp_path / "edge")
    async with make(backend, tmp_path / "edge", upsert_batch=7) as s:
        await s.upsert_events([event("t", "u", "s", f"e{i}", i, unit(rng)) for i in range(50)])
        assert await s.count("events", "t") == 50


@pytest.mark.parametrize("backend", BACKENDS)
async def test_closed_store_refuses_calls(backend, tmp_path, rng):
    s = make(backend, tmp_path / "edge")
    with pytest.raises(StoreClosedError):
        await s.count("events")
    await s.open()
    await s.open()  # idempotent
    await s.close()
    await s.close()
    with pytest.raises(StoreClosedError):
        await s.search_events(unit(rng), tenant_id="t")


# -- tenant isolation, property-based ----------------------------------------------------------------------

_point = st.tuples(
    st.sampled_from(["t1", "t2", "t3"]),  # tenant
    st.sampled_from(["u1", "u2"]),  # user
    st.sampled_from(["s1", "s2"]),  # session
    st.integers(0, 5),  # event / episode number, shared across tenants on purpose
)
_example = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=st.lists(_point, min_size=1, max_size=30), forget_who=_point, seed=st.integers(0, 2**16))
def test_tenants_never_see_each_other(long_lived, points, forget_who, seed):
    """Random tenants' points in one store (which also holds earlier examples' tenants): every search,
    get and forget sees exactly its own tenant's points."""
    loop, store = long_lived
    prefix = f"x{next(_example)}-"  # fresh tenants per example; earlier examples' data stays as noise
    tenants = [prefix + t for t in ("t1", "t2", "t3")]
    points = [(prefix + t, u, s, n) for t, u, s, n in points]
    rng = np.random.default_rng(seed)
    events = {(t, f"{s}-{n}"): event(t, u, s, f"{s}-{n}", n, unit(rng)) for t, u, s, n in points}
    episodes = {(t, s, n): episode(t, u, s, n, unit(rng)) for t, u, s, n in points}
    errors = {(t, f"{s}-{n}"): error(t, u, f"{s}-{n}", unit(rng)) for t, u, s, n in points}
    all_event_ids = sorted({e for _, e in events})

    async def check() -> None:
        await store.upsert_events(list(events.values()))
        await store.upsert_episodes(list(episodes.values()))
        await store.upsert_errors(list(errors.values()))
        q = unit(rng)
        for tenant in tenants:
            mine_ev = {e for (t, e) in events if t == tenant}
            hits = await store.search_events(q, tenant_id=tenant, limit=100)
            assert {h.event.event_id for h in hits} == mine_ev
            assert all(h.event.tenant_id == tenant for h in hits)
            eps = await store.search_episodes(q, tenant_id=tenant, limit=100)
            assert all(h.episode.tenant_id == tenant for h in eps)
            assert len(eps) == sum(1 for (t, _, _) in episodes if t == tenant)
            errs = await store.search_errors(q, tenant_id=tenant, model_version=None, limit=100)
            assert {h.error.event_id for h in errs} == {e for (t, e) in errors if t == tenant}
            got = await store.events_by_ids(tenant, all_event_ids)
            assert {e.event_id for e in got} == mine_ev and all(e.tenant_id == tenant for e in got)
            for session in ("s1", "s2"):
                by_index = await store.episodes_by_index(tenant, session, range(6))
                assert all(e.tenant_id == tenant and e.session_id == session for e in by_index)
                assert len(by_index) == sum(1 for (t, s, _) in episodes if (t, s) == (tenant, session))
            every_key = [(s, n) for (_, s, n) in episodes]
            by_keys = await store.episodes_by_keys(tenant, every_key)
            assert sorted((e.tenant_id, e.session_id, e.episode_index) for e in by_keys) == sorted(
                k for k in episodes if k[0] == tenant
            )
        before = {t: {c: await store.count(c, t) for c in Collection} for t in tenants}
        tenant, user = prefix + forget_who[0], forget_who[1]
        mine = [p for p in (*events.values(), *episodes.values(), *errors.values()) if p.tenant_id == tenant]
        assert await store.forget(tenant, user) == sum(1 for p in mine if p.user_id == user)
        for other in tenants:
            if other != tenant:
                assert {c: await store.count(c, other) for c in Collection} == before[other]
        assert await store.search_events(q, tenant_id=tenant, user_id=user, limit=100) == []
        assert await store.count("events", tenant) == sum(
            1 for e in events.values() if e.tenant_id == tenant and e.user_id != user
        )

    loop.run_until_complete(check())


# -- edge backend specifics --------------------------------------------------------------------------------


async def test_edge_survives_close_and_reopen(tmp_path: Path, rng):
    path = tmp_path / "edge"
    v = unit(rng)
    async with make("edge", path) as s:
        await s.upsert_events([event("t", "u", "s", f"e{i}", i, unit(rng)) for i in range(20)])
        await s.upsert_episodes([episode("t", "u", "s", 0, v)])
        await s.upsert_errors([error("t", "u", "f", v)])
    async with make("edge", path) as s:
        assert await s.count("events", "t") == 20
        assert await s.count("episodes", "t") == 1
        (hit,) = await s.search_episodes(v, tenant_id="t", limit=1)
        assert hit.episode.episode_index == 0 and hit.score == pytest.approx(1.0, abs=1e-5)
        assert len(await s.search_errors(v, tenant_id="t", model_version="v1")) == 1
        await s.upsert_events([event("t", "u", "s", "e0", 0, v)])  # replay after reopen still overwrites
        assert await s.count("events", "t") == 20


async def test_edge_refuses_another_dim_and_compacts_offline(tmp_path: Path, rng, empty_edge: Path):
    from memstream.agents.store.edge import compact_offline

    path = tmp_path / "edge"
    shutil.copytree(empty_edge, path)
    async with make("edge", path) as s:
        await s.upsert_events([event("t", u, "s", f"{u}-{i}", i, unit(rng)) for u in ("a", "b") for i in range(40)])
        assert await s.forget("t", "a") == 40
    with pytest.raises(StoreError):
        await EdgeStore(StoreConfig(path=path, dim=DIM + 1)).open()
    done = await asyncio.to_thread(compact_offline, path)  # its own thread here; its own process in production
    assert set(done) == {"events", "episodes", "errors"}
    async with make("edge", path) as s:
        assert await s.count("events", "t") == 40
        assert len(await s.search_events(unit(rng), tenant_id="t", user_id="b", limit=100)) == 40


async def test_edge_one_opener_per_path(tmp_path: Path):
    path = tmp_path / "edge"
    first = make("edge", path)
    await first.open()
    second = make("edge", path)
    with pytest.raises(StoreLockedError):
        await second.open()
    await first.close()
    await second.open()  # free again once the first closed
    await second.close()


def test_edge_keeps_writes_through_a_hard_exit(tmp_path: Path):
    path = tmp_path / "edge"
    script = textwrap.dedent(
        f"""
        import asyncio, os, numpy as np
        from memstream.agents.store import EdgeStore, EventPoint, StoreConfig
        async def main():
            s = EdgeStore(StoreConfig(path={str(path)!r}, dim={DIM}))
            await s.open()
            await s.upsert_events([EventPoint("t", "u", "s", f"e{{i}}", i, "x", np.ones({DIM})) for i in range(300)])
            os._exit(0)  # no close, no flush
        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

    async def reopen() -> int:
        async with make("edge", path) as s:
            return await s.count("events", "t")

    assert asyncio.run(reopen()) == 300


async def test_edge_writes_do_not_stall_the_event_loop(tmp_path: Path, rng):
    dim = 384
    vecs = rng.standard_normal((4000, dim)).astype(np.float32)
    points = [EventPoint("t", "u", f"s{i // 50}", f"e{i}", i, "x", vecs[i]) for i in range(len(vecs))]
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.002)
            lags.append(time.perf_counter() - t - 0.002)

    async with EdgeStore(StoreConfig(path=tmp_path / "edge", dim=dim)) as s:
        task = asyncio.create_task(ticker())
        await s.upsert_events(points)
        for v in vecs[:50]:
            await s.search_events(v, tenant_id="t", limit=10)
        done.set()
        await task
    assert max(lags) < 0.1, f"event loop stalled {max(lags) * 1e3:.0f} ms"


# -- server backend specifics ------------------------------------------------------------------------------


async def test_server_open_is_idempotent_and_checks_dim(rng):
    client = AsyncQdrantClient(location=":memory:")
    a = ServerStore(StoreConfig(backend="server", dim=DIM), client=client)
    await a.open()
    await a.upsert_events([event("t", "u", "s", "e", 0, unit(rng))])
    b = ServerStore(StoreConfig(backend="server", dim=DIM), client=client)
    await b.open()  # collections and indexes exist already: fine
    assert await b.count("events", "t") == 1
    c = ServerStore(StoreConfig(backend="server", dim=DIM + 1), client=client)
    with pytest.raises(StoreError):
        await c.open()
    await client.close()


def test_server_needs_url():
    with pytest.raises(StoreError):
        asyncio.run(ServerStore(StoreConfig(backend="server")).open())
