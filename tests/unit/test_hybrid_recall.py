"""Hybrid event recall over both store backends: dense context vectors and sparse BM25 vectors fused by
DBSF inside the store, episode context vectors, the recall budget, filters, and the reindex of a store
written before hybrid search existed.

edge: qdrant-edge in a temporary directory; server: the AsyncQdrantClient code path against
qdrant-client's local mode. Dense vectors are hand-made (the store logic is what is under test); the
lexical vectors are the real encoder's.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import AsyncQdrantClient, models

from memstream.agents.store import (
    Collection,
    EdgeStore,
    EpisodePoint,
    EventPoint,
    MemoryStore,
    ServerStore,
    StoreConfig,
    StoreError,
    StoreSchemaError,
    recall_events,
)
from memstream.agents.store.schema import CONTEXT, LEXICAL, point_id, to_payload
from memstream.models.event_context import context_weights
from memstream.models.lexical import LexicalEncoder, SparseVector, add_sparse
from tests.unit.stores import BACKENDS, empty_edge_template, fresh_store, store_config

DIM = 32
BETA = 0.5


def unit(rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(base: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at cosine ``cos`` from the unit vector ``base``."""
    other = rng.standard_normal(base.shape[0])
    other -= other.dot(base) * base
    other /= np.linalg.norm(other)
    return (cos * base + np.sqrt(1.0 - cos * cos) * other).astype(np.float32)


def config(backend: str, path: Path | None = None) -> StoreConfig:
    return store_config(backend, path, DIM)


@pytest.fixture(scope="module")
def empty_edge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed, empty edge store to copy (creating shards costs fsyncs; copying does not)."""
    return empty_edge_template(tmp_path_factory.mktemp("hybrid-template") / "edge", DIM)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path, empty_edge: Path):
    s = fresh_store(request.param, tmp_path, empty_edge, DIM)
    await s.open()
    yield s
    await s.close()


@pytest.fixture(scope="module")
def lexical() -> LexicalEncoder:
    return LexicalEncoder()


def sealed(events: list[EventPoint], index: int) -> EpisodePoint:
    first = events[0]
    centroid = np.mean([e.vector for e in events], axis=0)
    return EpisodePoint(
        first.tenant_id,
        first.user_id,
        first.session_id,
        index,
        events[0].ts,
        events[-1].ts,
        tuple(e.event_id for e in events),
        centroid,
        state="sealed",
    )


async def write_sealed(store: MemoryStore, episodes: list[list[EventPoint]]) -> None:
    """Events first, then their sealed episodes and the members' context vectors (the pipeline's order)."""
    await store.upsert_events([e for ep in episodes for e in ep])
    points = [sealed(ep, i) for i, ep in enumerate(episodes)]
    await store.upsert_episodes(points)
    assert await store.apply_episode_context(points, BETA) == sum(len(ep) for ep in episodes)


# -- a. one turn of a long episode ---------------------------------------------------------------------

CHITCHAT = [
    "hey, how was your weekend?",
    "pretty good, we went for a walk in the park",
    "nice, was the weather ok?",
    "a bit cloudy but warm enough",
    "did you watch the game last night?",
    "no, I fell asleep early to be honest",
    "haha same thing happened to me",
    "are you cooking anything tonight?",
    "maybe pasta, I have some tomatoes left",
    "sounds great, I love a simple pasta",
    "what are you reading these days?",
    "a mystery novel my friend lent me",
    "is it any good so far?",
    "the first chapters are slow but it gets better",
    "I should read more, honestly",
    "me too, I mostly scroll on my phone",
    "did you go to the gym this week?",
    "only once, I was too tired",
    "I know the feeling, work has been busy",
    "yes, lots of meetings lately",
    "do you have plans for the holidays?",
    "probably visiting my parents for a few days",
    "that will be relaxing",
    "I hope so, the trip is long though",
    "by train or by car?",
    "by train, I can read on the way",
    "good idea, less stress",
    "any new music recently?",
    "I keep listening to the same old playlist",
    "classic, nothing wrong with that",
]
ANSWER = "oh and my cousin Quillon Varga finally moved to Reykjavik in March"
QUERY = "Where did my cousin Quillon Varga move to?"


async def test_answer_in_one_turn_of_a_long_episode_comes_first(store: MemoryStore, lexical: LexicalEncoder):
    for seed in (1, 2, 3):  # three tenants of one store, three draws of embeddings
        await _answer_comes_first(store, lexical, f"t{seed}", np.random.default_rng(seed))


async def _answer_comes_first(store: MemoryStore, lexical: LexicalEncoder, tenant: str, rng: np.random.Generator):
    texts = CHITCHAT[:17] + [ANSWER] + CHITCHAT[17:]  # 31 turns, the answer in the middle
    answer = "s1-17"
    vectors = [unit(rng) for _ in texts]
    turns = [
        EventPoint(tenant, "u", "s1", f"s1-{i}", 100.0 + i, text, vectors[i], role="user" if i % 2 else "assistant")
        for i, text in enumerate(texts)
    ]
    # another session's chit-chat, so that common words are common in the store
    others = [EventPoint(tenant, "u", "s2", f"s2-{i}", 10.0 + i, text, unit(rng)) for i, text in enumerate(CHITCHAT)]
    await write_sealed(store, [turns])
    await store.upsert_events(others)
    await store.upsert_episodes([sealed(others, 0)])
    (member,) = await store.events_by_ids(tenant, [answer])
    assert member.episode_index == 0
    # the question is only loosely similar to the answer's embedding: dense alone does not put it first
    q = near(vectors[17], 0.3, rng)
    got = await recall_events(store, q, lexical.query(QUERY), tenant, budget=5)
    assert len(got) == 5
    assert got[0].event_id == answer and got[0].text == ANSWER
    assert got[0].score is not None and got[0].context_of is None
    assert got[0].episode_index == 0 and got[0].session_id == "s1"
    assert got[0].score > got[1].score
    # with episode turns, the answer still leads and its nearest turns follow it as context
    with_turns = await recall_events(store, q, lexical.query(QUERY), tenant, budget=3, episode_turns=2)
    assert [r.event_id for r in with_turns][0] == answer
    assert {r.event_id for r in with_turns[1:]} == {"s1-16", "s1-18"}
    assert all(r.context_of == answer and r.score is None and r.episode_index == 0 for r in with_turns[1:])


# -- b. the budget --------------------------------------------------------------------------------------

TOPICS = ["coffee beans", "train tickets", "garden roses", "piano lessons", "mountain hike"]


async def _budget_store(store: MemoryStore, rng: np.random.Generator) -> dict[str, EventPoint]:
    """20 events: two sessions of two sealed episodes of five turns each."""
    episodes = []
    for s, session in enumerate(("s1", "s2")):
        for ep in range(2):
            start = 1000.0 * s + 100.0 * ep
            episodes.append(
                [
                    EventPoint(
                        "t",
                        "u",
                        session,
                        f"{session}-{ep}-{j}",
                        start + j,
                        f"turn {j} about {TOPICS[(s + ep + j) % len(TOPICS)]}",
                        unit(rng),
                    )
                    for j in range(5)
                ]
            )
    for session in ("s1", "s2"):
        mine = [ep for ep in episodes if ep[0].session_id == session]
        await write_sealed(store, mine)
    await store.upsert_events([EventPoint("t2", "u", "s1", "s1-0-0", 1.0, "other tenant coffee", unit(rng))])
    return {e.event_id: e for ep in episodes for e in ep}


async def test_budget_is_respected_exactly(store: MemoryStore, lexical: LexicalEncoder):
    rng = np.random.default_rng(4)
    stored = await _budget_store(store, rng)
    q, lex = unit(rng), lexical.query("coffee beans please")
    with pytest.raises(ValueError):
        await recall_events(store, q, lex, "t", budget=0)
    for budget, turns in itertools.product([1, 2, 5, 19, 20, 25], [0, 1, 2]):
        got = await recall_events(store, q, lex, "t", budget=budget, episode_turns=turns)
        ids = [r.event_id for r in got]
        assert len(got) == min(budget, len(stored))
        assert len(set(ids)) == len(ids)
        assert set(ids) <= set(stored)  # never the other tenant's event of the same id
        hits = await store.hybrid_events(q, lex, tenant_id="t", limit=budget)
        assert got[0].event_id == hits[0].event.event_id
        if turns == 0:
            assert ids == [h.event.event_id for h in hits]
            assert [r.score for r in got] == pytest.approx([h.score for h in hits])
        last_hit: str | None = None
        mates_of: dict[str, list[str]] = {}
        for r in got:
            e = stored[r.event_id]
            assert (r.session_id, r.ts, r.text, r.user_id) == (e.session_id, e.ts, e.text, e.user_id)
            assert r.episode_index == int(r.event_id.split("-")[1])  # set when its episode was sealed
            if r.context_of is None:
                assert isinstance(r.score, float)
                last_hit = r.event_id
            else:
                assert r.score is None
                assert r.context_of == last_hit  # a mate follows its own hit
                hit = stored[last_hit]
                assert (r.session_id, r.episode_index) == (hit.session_id, int(last_hit.split("-")[1]))
                mates_of.setdefault(last_hit, []).append(r.event_id)
        hit_scores = [r.score for r in got if r.score is not None]
        assert hit_scores == sorted(hit_scores, reverse=True)
        for hit, mates in mates_of.items():
            assert len(mates) <= turns
            gaps = [abs(stored[m].ts - stored[hit].ts) for m in mates]
            assert gaps == sorted(gaps)  # nearest in time first
        if turns and budget >= 3:
            assert mates_of, "episode turns were asked for and there was room: some hit must bring its mates"


# -- c. an exact name beats a closer paraphrase -----------------------------------------------------------


async def test_exact_name_beats_a_closer_paraphrase(store: MemoryStore, lexical: LexicalEncoder):
    rng = np.random.default_rng(11)
    q = unit(rng)
    named = EventPoint("t", "u", "s", "named", 1.0, "I met Zorblax at the harbour", near(q, 0.55, rng))
    paraphrase = EventPoint(
        "t", "u", "s", "para", 2.0, "I ran into an old friend down by the docks", near(q, 0.85, rng)
    )
    noise = [
        EventPoint("t", "u", "s", f"n{i}", 3.0 + i, text, near(q, c, rng))
        for i, (text, c) in enumerate(
            [
                ("the harbour was busy with boats", 0.4),
                ("I met my sister for lunch", 0.3),
                ("we talked about the weather", 0.1),
                ("the docks smell of fish in summer", 0.5),
                ("an old friend called me yesterday", 0.45),
                ("where is the best bakery in town", 0.2),
            ]
        )
    ]
    await store.upsert_events([named, paraphrase, *noise])
    await store.upsert_episodes([sealed([named, paraphrase, *noise], 0)])
    dense_only = await store.search_events(q, tenant_id="t", limit=3)
    assert dense_only[0].event.event_id == "para"  # the premise: the paraphrase is closer by embedding
    no_words = await store.hybrid_events(q, SparseVector(), tenant_id="t", limit=3)
    assert no_words[0].event.event_id == "para"  # with no query words, fusion is the dense order
    by_name = await store.hybrid_events(q, lexical.query("Where did I meet Zorblax?"), tenant_id="t", limit=3)
    assert by_name[0].event.event_id == "named"
    assert by_name[0].score > by_name[1].score
    assert [h.score for h in by_name] == sorted((h.score for h in by_name), reverse=True)
    got = await recall_events(store, q, lexical.query("Where did I meet Zorblax?"), "t", budget=2)
    assert got[0].event_id == "named"


async def test_another_tenants_texts_do_not_change_the_ranking(store: MemoryStore, lexical: LexicalEncoder):
    """Lexical IDF is computed over the asking tenant's events only: another tenant writing a word many
    times must not re-rank this tenant's results (a side channel between tenants otherwise)."""
    v = unit(np.random.default_rng(5))
    mine = [
        EventPoint("a", "u", "s", "rare", 1.0, "zebra", v),
        *(EventPoint("a", "u", "s", f"common{i}", 2.0 + i, "apple", v) for i in range(3)),
    ]
    await store.upsert_events(mine)
    query = lexical.query("zebra apple")
    before = [h.event.event_id for h in await store.hybrid_events(v, query, tenant_id="a", limit=4)]
    assert before[0] == "rare"  # zebra is the rarer word in tenant a
    await store.upsert_events([EventPoint("b", "u", "s", f"z{i}", 1.0, "zebra zebra", v) for i in range(60)])
    after = [h.event.event_id for h in await store.hybrid_events(v, query, tenant_id="a", limit=4)]
    assert after[0] == "rare", "tenant b's texts changed tenant a's ranking"
    assert set(after) == set(before)


# -- d. tenant and user filters hold in the hybrid query -------------------------------------------------

WORDS = ["apple", "harbour", "piano", "Zorblax", "train", "garden"]
_event = st.tuples(
    st.sampled_from(["t1", "t2", "t3"]),
    st.sampled_from(["u1", "u2", "u3"]),
    st.sampled_from(["s1", "s2"]),
    st.integers(0, 4),  # event number: the same ids in every tenant, on purpose
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=4),  # overlapping texts
)
_example = itertools.count()


@pytest.fixture(scope="module", params=BACKENDS)
def long_lived(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, empty_edge: Path):
    """One store per backend on its own loop, shared by the property test's examples."""
    loop = asyncio.new_event_loop()
    s = fresh_store(request.param, tmp_path_factory.mktemp("hybrid-shared"), empty_edge, DIM)
    loop.run_until_complete(s.open())
    yield loop, s
    loop.run_until_complete(s.close())
    loop.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    points=st.lists(_event, min_size=1, max_size=25),
    query=st.lists(st.sampled_from(WORDS), min_size=0, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_hybrid_filters_hold(long_lived, lexical, points, query, seed):
    """Every hit of hybrid_events(tenant_id=T, user_id=U) is T's and U's, and with more candidates than
    points every one of T's (and U's) events is found, across overlapping texts and ids."""
    loop, store = long_lived
    prefix = f"h{next(_example)}-"  # fresh tenants per example; earlier examples stay as noise
    rng = np.random.default_rng(seed)
    events: dict[tuple[str, str], EventPoint] = {}
    for t, u, s, n, words in points:
        tenant = prefix + t
        # a session belongs to one user: the user is part of the session id
        events[(tenant, f"{u}-{s}-{n}")] = EventPoint(
            tenant, u, f"{u}-{s}", f"{u}-{s}-{n}", float(n), " ".join(words), unit(rng)
        )
    tenants = [prefix + t for t in ("t1", "t2", "t3")]
    by_session: dict[tuple[str, str], list[EventPoint]] = {}
    for e in events.values():
        by_session.setdefault((e.tenant_id, e.session_id), []).append(e)
    episodes = [sealed(sorted(ev, key=lambda e: e.ts), 0) for ev in by_session.values()]
    q, lex = unit(rng), lexical.query(" ".join(query))

    async def check() -> None:
        await store.upsert_events(list(events.values()))
        await store.upsert_episodes(episodes)
        await store.apply_episode_context(episodes, BETA)
        for tenant in tenants:
            for user in (None, "u1", "u2", "u3"):
                hits = await store.hybrid_events(q, lex, tenant_id=tenant, user_id=user, limit=100, candidates=200)
                expected = {
                    e.event_id for (t, _), e in events.items() if t == tenant and (user is None or e.user_id == user)
                }
                assert all(h.event.tenant_id == tenant for h in hits)
                assert all(user is None or h.event.user_id == user for h in hits)
                assert {h.event.event_id for h in hits} == expected
                assert len(hits) == len(expected)
                assert all(h.event.episode_index == 0 for h in hits)
                got = await recall_events(store, q, lex, tenant, user_id=user, budget=3, episode_turns=2)
                assert all(r.event_id in expected for r in got)
                assert len(got) == min(3, len(expected))

    loop.run_until_complete(check())


# -- e. reindex of a store written before hybrid search --------------------------------------------------


def _old_store_records(rng: np.random.Generator) -> tuple[list[EventPoint], list[EpisodePoint]]:
    texts = [
        "we talked about the weather",
        "then Zorblax showed up at the harbour",
        "and we had coffee",
        "later I took the train home",
        "the train was late",
        "I read a book on the way",
    ]
    events = [
        EventPoint(
            "t1",
            "u1",
            "s1",
            f"e{i}",
            float(i),
            text,
            unit(rng),
            role="assistant" if i % 2 else "user",
            kind="message",
            attributes={"lang": "en", "n": i},
        )
        for i, text in enumerate(texts)
    ]
    # t2 uses the same event ids: a reindex must not mix tenants
    events += [
        EventPoint("t2", "u2", "s1", f"e{i}", 10.0 + i, f"tenant two says {w}", unit(rng))
        for i, w in enumerate(["hello", "apple pie", "goodbye", "see you"])
    ]
    t1 = [e for e in events if e.tenant_id == "t1"]
    t2 = [e for e in events if e.tenant_id == "t2"]
    episodes = [
        sealed(t1[:3], 0),  # sealed: members get context vectors
        EpisodePoint(
            "t1",
            "u1",
            "s1",
            1,
            3.0,
            5.0,
            tuple(e.event_id for e in t1[3:]),
            np.mean([e.vector for e in t1[3:]], axis=0),
            state="opened",
        ),  # open: own vectors only
        sealed(t2, 0),
    ]
    return events, episodes


def _write_old_edge(path: Path, events: list[EventPoint], episodes: list[EpisodePoint], dim: int = DIM) -> None:
    """Shards as the code before hybrid search created them: one unnamed cosine vector."""
    for collection in Collection:
        directory = path / collection.value
        directory.mkdir(parents=True)
        shard = qe.EdgeShard.create(
            str(directory),
            qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
                optimizers=qe.EdgeOptimizersConfig(indexing_threshold=0),
            ),
        )
        try:
            records = {Collection.EVENTS: events, Collection.EPISODES: episodes}.get(collection, [])
            if records:
                shard.update(
                    qe.UpdateOperation.upsert_points(
                        [
                            qe.Point(point_id(r), np.asarray(r.vector, dtype=np.float32).tolist(), to_payload(r))
                            for r in records
                        ]
                    )
                )
            shard.flush()
        finally:
            shard.close()


async def _write_old_server(
    client: AsyncQdrantClient, prefix: str, events: list[EventPoint], episodes: list[EpisodePoint]
) -> None:
    for collection in Collection:
        await client.create_collection(
            f"{prefix}{collection.value}", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
        )
    for collection, records in ((Collection.EVENTS, events), (Collection.EPISODES, episodes)):
        await client.upsert(
            f"{prefix}{collection.value}",
            points=[
                models.PointStruct(
                    id=point_id(r), vector=np.asarray(r.vector, dtype=np.float32).tolist(), payload=to_payload(r)
                )
                for r in records
            ],
            wait=True,
        )


def _as_unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _sparse_dict(raw) -> dict[int, float]:
    if isinstance(raw, SparseVector):
        return raw.as_dict()
    return {int(i): float(v) for i, v in zip(raw.indices, raw.values)}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_reindex_keeps_every_point_and_makes_it_findable(backend: str, tmp_path: Path, lexical: LexicalEncoder):
    rng = np.random.default_rng(5)
    events, episodes = _old_store_records(rng)
    path = tmp_path / "edge"
    client: AsyncQdrantClient | None = None
    cfg = config(backend, path)
    if backend == "edge":
        _write_old_edge(path, events, episodes)

        def opener(migrate: bool) -> MemoryStore:
            return EdgeStore(cfg, migrate=migrate)
    else:
        client = AsyncQdrantClient(location=":memory:")
        await _write_old_server(client, cfg.collection_prefix, events, episodes)

        def opener(migrate: bool) -> MemoryStore:
            return ServerStore(cfg, client=client, migrate=migrate)

    with pytest.raises(StoreSchemaError):
        await opener(False).open()

    store = opener(True)
    await store.open()
    try:
        said: list[str] = []
        result = await store.reindex_events(BETA, page=3, progress=said.append)  # several pages of each
        assert result == {"events_before": 10, "events_after": 10, "events_rewritten": 10, "episodes": 2}
        assert said and said[-1].startswith("episodes")
        assert await store.count(Collection.EVENTS) == 10
        assert await store.count(Collection.EPISODES) == 3

        raw: list = []
        offset = None
        while True:  # every stored event with all its vectors
            page, offset = await store._scroll_page(Collection.EVENTS, offset, 100)
            raw.extend(page)
            if offset is None:
                break
        assert len(raw) == 10
        stored = {(p["tenant_id"], p["event_id"]): (p, v) for p, v, _ in raw}
        sealed_members = {("t1", "e0"), ("t1", "e1"), ("t1", "e2"), *(("t2", f"e{i}") for i in range(4))}
        for e in events:
            payload, vectors = stored[(e.tenant_id, e.event_id)]
            index = 0 if (e.tenant_id, e.event_id) in sealed_members else None
            assert payload == to_payload(replace(e, episode_index=index))
            assert isinstance(vectors, dict) and {"", CONTEXT, LEXICAL} <= set(vectors)
            np.testing.assert_allclose(vectors[""], _as_unit(e.vector), atol=1e-6)  # own vector untouched

        # context vectors: the sealed members' own vectors mixed with their neighbours', the others' own
        for tenant, members in (("t1", events[:3]), ("t2", events[6:])):
            w = context_weights(len(members), BETA)
            mixed = w @ np.stack([_as_unit(m.vector) for m in members])
            docs = [lexical.document(m.text) for m in members]
            for i, m in enumerate(members):
                _, vectors = stored[(tenant, m.event_id)]
                np.testing.assert_allclose(vectors[CONTEXT], mixed[i], atol=1e-5)
                want = add_sparse(docs, list(w[i])).as_dict()
                got = _sparse_dict(vectors[LEXICAL])
                assert got.keys() == want.keys()
                assert [got[k] for k in sorted(got)] == pytest.approx([want[k] for k in sorted(want)], rel=1e-5)
        for m in events[3:6]:  # the open episode's members
            _, vectors = stored[("t1", m.event_id)]
            np.testing.assert_allclose(vectors[CONTEXT], _as_unit(m.vector), atol=1e-5)
            assert _sparse_dict(vectors[LEXICAL]) == pytest.approx(lexical.document(m.text).as_dict())

        # and hybrid search finds them, by name and by embedding, within the tenant
        hits = await store.hybrid_events(events[1].vector, lexical.query("Zorblax"), tenant_id="t1", limit=10)
        assert len(hits) == 6
        assert hits[0].event.event_id == "e1" and hits[0].event.episode_index == 0
        assert hits[0].event.text == events[1].text
        hits = await store.hybrid_events(events[7].vector, lexical.query("apple pie"), tenant_id="t2", limit=10)
        assert hits[0].event.event_id == "e1" and hits[0].event.tenant_id == "t2"
        assert {h.event.event_id for h in hits} == {"e0", "e1", "e2", "e3"}
        got = await recall_events(store, events[4].vector, lexical.query("train"), "t1", budget=2)
        assert {r.event_id for r in got} == {"e3", "e4"} and all(r.episode_index is None for r in got)
        assert await store.reindex_events(BETA) == result  # a second reindex changes nothing
    finally:
        await store.close()

    reopened = opener(False)  # upgraded: it opens without migrate now
    await reopened.open()
    try:
        assert await reopened.count(Collection.EVENTS) == 10
        hits = await reopened.hybrid_events(events[1].vector, lexical.query("Zorblax"), tenant_id="t1", limit=1)
        assert hits[0].event.event_id == "e1"
    finally:
        await reopened.close()
        if client is not None:
            await client.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_another_dim_is_refused_not_migrated(backend: str, tmp_path: Path, empty_edge: Path):
    """A store of another dim is a StoreError, not an older schema to reindex: a migrate must not add vectors
    of the wrong size to it (the store would then open with neither dim), and it stays as it was."""
    rng = np.random.default_rng(9)
    events, episodes = _old_store_records(rng)
    wrong = (
        StoreConfig(path=tmp_path / "old", dim=DIM + 1)
        if backend == "edge"
        else StoreConfig(backend="server", url=":memory:", dim=DIM + 1)
    )
    client, other = AsyncQdrantClient(location=":memory:"), AsyncQdrantClient(location=":memory:")
    try:
        if backend == "edge":
            _write_old_edge(tmp_path / "old", events, episodes)
            shutil.copytree(empty_edge, tmp_path / "new")
            old = lambda cfg, migrate: EdgeStore(cfg, migrate=migrate)  # noqa: E731
            new = lambda cfg: EdgeStore(cfg.model_copy(update={"path": tmp_path / "new"}))  # noqa: E731
        else:
            await _write_old_server(client, wrong.collection_prefix, events, episodes)
            async with ServerStore(config("server"), client=other):
                pass
            old = lambda cfg, migrate: ServerStore(cfg, client=client, migrate=migrate)  # noqa: E731
            new = lambda cfg: ServerStore(cfg, client=other)  # noqa: E731
        for migrate in (False, True):
            with pytest.raises(StoreError) as refused:
                await old(wrong, migrate).open()
            assert not isinstance(refused.value, StoreSchemaError)
        with pytest.raises(StoreError) as refused:  # a current store of another dim: no reindex can help
            await new(wrong).open()
        assert not isinstance(refused.value, StoreSchemaError)
        # the older store is intact: with its own dim it migrates and keeps every point
        right = wrong.model_copy(update={"dim": DIM})
        with pytest.raises(StoreSchemaError):
            await old(right, False).open()
        store = old(right, True)
        await store.open()
        try:
            assert (await store.reindex_events(BETA))["events_after"] == len(events)
        finally:
            await store.close()
    finally:
        await client.close()
        await other.close()


def test_the_reindex_command_upgrades_an_old_store_for_the_recall_command(tmp_path: Path):
    """What a user runs: `memstream recall` refuses an old store and names the fix; `memstream store reindex`
    upgrades it in place; `memstream recall` then finds the one turn that names what was asked."""
    import json
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(3)
    texts = [
        "we talked about the weather",
        "then Zorblax showed up at the harbour",
        "and we had coffee",
        "later I took the train home",
    ]
    events = [EventPoint("t1", "u1", "s1", f"e{i}", float(i), text, unit(rng, 384)) for i, text in enumerate(texts)]
    _write_old_edge(tmp_path / "state" / "qdrant-edge", events, [sealed(events, 0)], dim=384)
    env = {**os.environ, "MEMSTREAM_WORKER__STATE_DIR": str(tmp_path / "state")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "memstream.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )

    refused = cli("recall", "Who showed up at the harbour?", "--tenant", "t1", "--json")
    assert refused.returncode == 2 and "memstream store reindex" in refused.stderr, refused
    done = cli("store", "reindex")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"events_before": 4, "events_after": 4, "events_rewritten": 4, "episodes": 1}
    found = cli("recall", "Did Zorblax come?", "--tenant", "t1", "--budget", "2", "--json")
    assert found.returncode == 0, found.stderr
    recalled = json.loads(found.stdout)
    assert [e["event_id"] for e in recalled][0] == "e1" and len(recalled) == 2
    assert all(e["episode_index"] == 0 and e["session_id"] == "s1" for e in recalled)
