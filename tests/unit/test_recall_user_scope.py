"""Issue 14 part 5, recall side: a session should belong to one user, but nothing in the store enforces it,
so recall's neighbour fetch carries the user filter. Property: when two users of a tenant share session
ids, a user's recall (episode mode, or events with their episode's turns) holds only that user's memory,
and episode mode answers exactly what it answers over a store that holds nothing of the other user."""

from __future__ import annotations

import asyncio

import hypothesis as hyp
import hypothesis.strategies as st
import numpy as np
from qdrant_client import AsyncQdrantClient

from memstream.agents.store import EpisodePoint, EventPoint, MemoryStore, ServerStore, StoreConfig, recall
from memstream.agents.store.recall import recall_events
from memstream.models.lexical import LexicalEncoder

DIM = 32
USERS = ("u1", "u2")
LEXICAL = LexicalEncoder()


def _axis(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    return v


# episodes: distinct (session, index) slots from 3 shared session ids, each owned by either user
_layouts = st.lists(
    st.tuples(st.sampled_from(["s0", "s1", "s2"]), st.integers(0, 3), st.sampled_from(USERS)),
    min_size=2,
    max_size=12,
    unique_by=lambda e: (e[0], e[1]),
)


def _store() -> MemoryStore:
    return ServerStore(StoreConfig(backend="server", dim=DIM), client=AsyncQdrantClient(location=":memory:"))


async def _fill(store: MemoryStore, layout: list[tuple[str, int, str]], only: str | None = None) -> None:
    events, episodes = [], []
    for axis, (session, index, user) in enumerate(layout):  # each episode on its own axis: no score ties
        if only is not None and user != only:
            continue
        ids = tuple(f"{session}-{index}-{j}" for j in range(2))
        start = 100.0 * index
        for j, event_id in enumerate(ids):
            events.append(
                EventPoint(
                    "acme", user, session, event_id, start + j, f"{event_id} note", _axis(axis), episode_index=index
                )
            )
        episodes.append(EpisodePoint("acme", user, session, index, start, start + 1, ids, _axis(axis), state="sealed"))
    if events:
        await store.upsert_events(events)
        await store.upsert_episodes(episodes)


def _episodes(result) -> list[tuple]:
    return [(r.user_id, r.session_id, r.episode_index, r.score, [e.event_id for e in r.events]) for r in result]


@hyp.settings(max_examples=25, deadline=None)
@hyp.given(
    layout=_layouts,
    user=st.sampled_from(USERS),
    weights=st.permutations(range(1, DIM + 1)),  # distinct weights per axis: no score ties
    k_s=st.integers(1, 3),
    k_c=st.integers(0, 2),
    turns=st.integers(0, 2),
)
def test_a_users_recall_holds_only_their_memory(layout, user, weights, k_s, k_c, turns) -> None:
    query = np.asarray(weights, dtype=np.float32)

    async def run() -> None:
        async with _store() as mixed, _store() as own:
            await _fill(mixed, layout)
            await _fill(own, layout, only=user)
            got = await recall(mixed, query, "acme", user_id=user, k_s=k_s, k_c=k_c)
            assert all(r.user_id == user and all(e.user_id == user for e in r.events) for r in got)
            assert _episodes(got) == _episodes(await recall(own, query, "acme", user_id=user, k_s=k_s, k_c=k_c))

            events = await recall_events(
                mixed, query, LEXICAL.query("note"), "acme", user_id=user, budget=6, episode_turns=turns
            )
            assert all(e.user_id == user for e in events)

    asyncio.run(run())
