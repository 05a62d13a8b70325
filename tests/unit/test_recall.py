"""Two-stage recall: the pure selection with hand-made answers, then end to end on both store backends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient

from memstream.agents.store import EdgeStore, EpisodePoint, EventPoint, MemoryStore, ServerStore, StoreConfig, recall
from memstream.models.recall import Selected, neighbour_keys, select_contiguous

# -- pure selection ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ep:
    session_id: str
    episode_index: int
    start_ts: float


def ep(session: str, index: int, start: float | None = None) -> Ep:
    return Ep(session, index, float(index * 10) if start is None else start)


def keys(selection: list[Selected[Ep]]) -> list[tuple[str, int, float | None, float]]:
    return [(s.episode.session_id, s.episode.episode_index, s.score, s.anchor_score) for s in selection]


def test_neighbour_keys_both_sides_within_session():
    hits = [(ep("a", 5), 0.9), (ep("b", 0), 0.8)]
    assert neighbour_keys(hits, 1) == [("a", 4), ("a", 6), ("b", 1)]  # b has no index -1
    assert neighbour_keys(hits, 2) == [("a", 3), ("a", 4), ("a", 6), ("a", 7), ("b", 1), ("b", 2)]
    assert neighbour_keys(hits, 0) == []
    assert neighbour_keys([], 3) == []
    with pytest.raises(ValueError):
        neighbour_keys(hits, -1)


def test_neighbour_keys_skip_other_hits_and_dedupe():
    hits = [(ep("a", 5), 0.9), (ep("a", 6), 0.7), (ep("a", 8), 0.5)]
    # 4 (of 5), 7 (of 6 and 8), 9 (of 8); 5 and 6 are hits themselves
    assert neighbour_keys(hits, 1) == [("a", 4), ("a", 7), ("a", 9)]


def test_select_orders_in_time_and_marks_neighbours():
    hits = [(ep("a", 5), 0.9), (ep("b", 1, start=12.0), 0.6)]  # given best first, not in time order
    lookup = {
        ("a", 4): ep("a", 4),
        ("a", 6): ep("a", 6),
        ("b", 0): ep("b", 0, start=3.0),
        ("b", 2): ep("b", 2, start=30.0),
    }
    got = select_contiguous(hits, lookup, 1)
    assert keys(got) == [
        ("b", 0, None, 0.6),  # ts 3
        ("b", 1, 0.6, 0.6),  # ts 12
        ("b", 2, None, 0.6),  # ts 30
        ("a", 4, None, 0.9),  # ts 40
        ("a", 5, 0.9, 0.9),  # ts 50
        ("a", 6, None, 0.9),  # ts 60
    ]
    assert [s.is_hit for s in got] == [False, True, False, False, True, False]


def test_select_neighbour_of_two_hits_inherits_the_best_and_a_hit_stays_a_hit():
    hits = [(ep("a", 2), 0.4), (ep("a", 4), 0.8), (ep("a", 3), 0.5)]
    lookup = {(s, i): ep(s, i) for s, i in [("a", 1), ("a", 5)]}
    got = select_contiguous(hits, lookup, 1)
    assert keys(got) == [
        ("a", 1, None, 0.4),
        ("a", 2, 0.4, 0.4),
        ("a", 3, 0.5, 0.5),  # adjacent to 2 and 4 but a hit: keeps its own score
        ("a", 4, 0.8, 0.8),
        ("a", 5, None, 0.8),
    ]
    hits = [(ep("a", 2), 0.4), (ep("a", 4), 0.8)]
    got = select_contiguous(hits, {("a", 3): ep("a", 3)}, 1)
    assert keys(got) == [("a", 2, 0.4, 0.4), ("a", 3, None, 0.8), ("a", 4, 0.8, 0.8)]


def test_select_skips_missing_neighbours_and_dedupes_hits():
    hits = [(ep("a", 0), 0.3), (ep("a", 0), 0.7), (ep("a", 9), 0.2)]
    got = select_contiguous(hits, {("a", 1): ep("a", 1)}, 1)  # ("a", 8), ("a", 10) not stored
    assert keys(got) == [("a", 0, 0.7, 0.7), ("a", 1, None, 0.7), ("a", 9, 0.2, 0.2)]
    assert select_contiguous([], {}, 1) == []
    # k_c = 0: similarity only
    assert keys(select_contiguous(hits, {("a", 1): ep("a", 1)}, 0)) == [("a", 0, 0.7, 0.7), ("a", 9, 0.2, 0.2)]


def test_select_breaks_time_ties_by_session_then_index():
    hits = [(ep("b", 1, start=5.0), 0.5), (ep("a", 2, start=5.0), 0.4), (ep("a", 1, start=5.0), 0.3)]
    assert [(s.episode.session_id, s.episode.episode_index) for s in select_contiguous(hits, {}, 0)] == [
        ("a", 1),
        ("a", 2),
        ("b", 1),
    ]


# -- end to end --------------------------------------------------------------------------------------------

DIM = 32


def _topic(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v


async def _fill(store: MemoryStore, tenant: str) -> None:
    """Two users, one session each, 6 episodes of 3 events; episode (session, k) points at its own axis."""
    for user, session, base_topic, t0 in (("alice", "sa", 0, 0.0), ("bob", "sb", 10, 1000.0)):
        events, episodes = [], []
        for k in range(6):
            ids = tuple(f"{session}-{k}-{j}" for j in range(3))
            start = t0 + 100.0 * k
            for j, event_id in enumerate(ids):
                # stored out of time order on purpose: recall sorts each episode's events by ts
                events.append(
                    EventPoint(
                        tenant,
                        user,
                        session,
                        event_id,
                        start + 10.0 * (2 - j),
                        f"{event_id} text",
                        _topic(base_topic + k),
                        episode_index=k,
                        role="user" if j % 2 else "assistant",
                    )
                )
            episodes.append(
                EpisodePoint(tenant, user, session, k, start, start + 20.0, ids, _topic(base_topic + k), state="sealed")
            )
        await store.upsert_events(events)
        await store.upsert_episodes(episodes)


@pytest.fixture(params=["edge", "server"])
async def filled(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "edge":
        store: MemoryStore = EdgeStore(StoreConfig(path=tmp_path / "edge", dim=DIM))
    else:
        store = ServerStore(StoreConfig(backend="server", dim=DIM), client=AsyncQdrantClient(location=":memory:"))
    async with store:
        await _fill(store, "acme")
        await _fill(store, "other")  # same content, other tenant: must never appear
        yield store


def _summary(result) -> list[tuple[str, int, bool]]:
    return [(r.session_id, r.episode_index, r.is_hit) for r in result]


async def test_recall_hit_with_neighbours_and_events(filled: MemoryStore):
    query = _topic(3) + 0.5 * _topic(4)  # closest: alice's episode 3, then 4
    result = await recall(filled, query, "acme", k_s=1, k_c=1)
    assert _summary(result) == [("sa", 2, False), ("sa", 3, True), ("sa", 4, False)]
    hit = result[1]
    assert hit.score == pytest.approx(1 / np.sqrt(1.25), abs=1e-4) and hit.anchor_score == hit.score
    assert result[0].score is None and result[0].anchor_score == hit.score
    assert all(r.tenant_id == "acme" for r in result)
    assert [e.event_id for e in hit.events] == ["sa-3-2", "sa-3-1", "sa-3-0"]  # time order
    assert [e.ts for e in hit.events] == [300.0, 310.0, 320.0]
    assert hit.events[0].text == "sa-3-2 text" and hit.events[0].role == "assistant"
    # each event as the store holds it, as in event mode
    assert {(e.tenant_id, e.user_id, e.session_id, e.episode_index) for e in hit.events} == {("acme", "alice", "sa", 3)}
    assert hit.state == "sealed" and (hit.start_ts, hit.end_ts) == (300.0, 320.0)


async def test_recall_two_hits_merge_and_order_in_time(filled: MemoryStore):
    query = _topic(14) + 0.9 * _topic(1)  # bob's episode 4 (t=1400), alice's episode 1 (t=100)
    result = await recall(filled, query, "acme", k_s=2, k_c=1)
    assert _summary(result) == [
        ("sa", 0, False),
        ("sa", 1, True),
        ("sa", 2, False),
        ("sb", 3, False),
        ("sb", 4, True),
        ("sb", 5, False),
    ]
    assert [r.start_ts for r in result] == sorted(r.start_ts for r in result)
    # first/last episode of a session: only the neighbour that exists
    result = await recall(filled, _topic(5), "acme", k_s=1, k_c=2)
    assert _summary(result) == [("sa", 3, False), ("sa", 4, False), ("sa", 5, True)]


async def test_recall_filters_apply_to_hits(filled: MemoryStore):
    query = _topic(14) + 0.9 * _topic(1)
    only_alice = await recall(filled, query, "acme", user_id="alice", k_s=1, k_c=0)
    assert _summary(only_alice) == [("sa", 1, True)]
    only_sb = await recall(filled, query, "acme", session_id="sb", k_s=1, k_c=0)
    assert _summary(only_sb) == [("sb", 4, True)]
    # time window restricts the hits; neighbours are context and may lie outside it
    windowed = await recall(filled, _topic(3), "acme", since=250.0, until=330.0, k_s=1, k_c=1)
    assert _summary(windowed) == [("sa", 2, False), ("sa", 3, True), ("sa", 4, False)]
    late = await recall(filled, _topic(3), "acme", since=1000.0, k_s=1, k_c=0)
    assert [r.session_id for r in late] == ["sb"]


async def test_recall_is_tenant_scoped(filled: MemoryStore):
    assert await recall(filled, _topic(3), "nobody", k_s=5, k_c=1) == []
    result = await recall(filled, _topic(3), "other", k_s=3, k_c=1)
    assert result and all(r.tenant_id == "other" for r in result)
    with pytest.raises(ValueError):
        await recall(filled, _topic(3), "", k_s=3)
    with pytest.raises(ValueError):
        await recall(filled, _topic(3), "acme", k_s=0)


async def test_recall_to_dict_is_json_ready(filled: MemoryStore):
    import orjson

    (first, *_rest) = await recall(filled, _topic(0), "acme", k_s=1, k_c=1)
    data = orjson.loads(orjson.dumps(first.to_dict()))
    assert data["session_id"] == "sa" and data["is_hit"] is True and len(data["events"]) == 3
