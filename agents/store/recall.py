"""Recall over a :class:`~agents.store.scoped.MemoryStore`. The selection itself is :mod:`models.recall` (pure).

:func:`recall_events` (the default): events ranked by hybrid search (dense + lexical, fused in the store),
each hit optionally followed by the nearest turns of its episode, at most ``budget`` events.

:func:`recall` (episode mode): similarity hits among episodes, their temporal neighbours, and each
selected episode's events.

Neighbours are context of a hit: they are fetched from the hit's session whatever the time window, with
the user filter of the hits (a session should belong to one user, but nothing in the store enforces it:
another user's episode or event under the same session id is never someone else's context).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from numpy.typing import ArrayLike

from memstream.agents.store.base import EpisodePoint, EpisodeState, EventPoint
from memstream.agents.store.scoped import MemoryStore
from memstream.models.lexical import SparseVector
from memstream.models.recall import Key, neighbour_keys, select_contiguous, within_budget

__all__ = ["RecalledEpisode", "RecalledEvent", "recall", "recall_events"]


@dataclass(frozen=True, slots=True)
class RecalledEvent:
    """One recalled event. In event mode ``score`` is its fused similarity if it is a hit, None if it came
    as context of the hit ``context_of``; ``episode_index`` is None while its episode is still open."""

    event_id: str
    ts: float
    text: str
    role: str
    session_id: str = ""
    user_id: str = ""
    episode_index: int | None = None
    score: float | None = None
    context_of: str | None = None
    tenant_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_RECALL_OWN = ("score", "context_of")
_FROM_EVENT = tuple(f.name for f in fields(RecalledEvent) if f.name not in _RECALL_OWN)
"""The fields of a recalled event that are the stored event's (all but what recall itself adds)."""


def _recalled(event: EventPoint, score: float | None = None, context_of: str | None = None) -> RecalledEvent:
    return RecalledEvent(**{name: getattr(event, name) for name in _FROM_EVENT}, score=score, context_of=context_of)


async def recall_events(
    store: MemoryStore,
    query_vector: ArrayLike,
    query_lexical: SparseVector,
    tenant_id: str,
    user_id: str | None = None,
    session_id: str | None = None,
    budget: int = 20,
    episode_turns: int = 0,
    candidates: int = 400,
    since: float | None = None,
    until: float | None = None,
) -> list[RecalledEvent]:
    """At most ``budget`` events, best first: each hit of the hybrid search, then up to ``episode_turns``
    other turns of its sealed episode (nearest in time first), then the next hit.

    One store call without episode turns; three with them (hits, their episodes, the episodes' events).
    """
    if budget < 1:
        raise ValueError("budget must be >= 1")
    hits = await store.hybrid_events(
        query_vector,
        query_lexical,
        tenant_id=tenant_id,
        user_id=user_id,
        session_id=session_id,
        since=since,
        until=until,
        limit=budget,
        candidates=candidates,
    )
    events = {h.event.event_id: h.event for h in hits}
    scores = {h.event.event_id: h.score for h in hits}
    mates: dict[str, list[str]] = {}
    if episode_turns > 0:
        keys = sorted({(e.session_id, e.episode_index) for e in events.values() if e.episode_index is not None})
        episodes = await store.episodes_by_keys(tenant_id, keys, user_id=user_id) if keys else []
        members = {(ep.session_id, ep.episode_index): ep.event_ids for ep in episodes}
        wanted = [e for ids in members.values() for e in ids if e not in events]
        for event in await store.events_by_ids(tenant_id, wanted, user_id=user_id) if wanted else []:
            events[event.event_id] = event
        for hit in scores:
            event = events[hit]
            others = [
                events[e] for e in members.get((event.session_id, event.episode_index), ()) if e in events and e != hit
            ]
            mates[hit] = [e.event_id for e in sorted(others, key=lambda o: (abs(o.ts - event.ts), o.ts))]
    order = within_budget(list(scores), mates, episode_turns, budget)
    return [_recalled(events[e], scores.get(e) if of is None else None, of) for e, of in order]


@dataclass(frozen=True, slots=True)
class RecalledEpisode:
    """One recalled episode. ``score``: similarity if a stage-1 hit, None if added for contiguity;
    ``anchor_score``: the best similarity among the hits it is or neighbours."""

    tenant_id: str
    user_id: str
    session_id: str
    episode_index: int
    start_ts: float
    end_ts: float
    state: EpisodeState
    score: float | None
    anchor_score: float
    events: list[RecalledEvent] = field(default_factory=list)

    @property
    def is_hit(self) -> bool:
        return self.score is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"is_hit": self.is_hit}


async def recall(
    store: MemoryStore,
    query_vector: ArrayLike,
    tenant_id: str,
    user_id: str | None = None,
    session_id: str | None = None,
    k_s: int = 5,
    k_c: int = 1,
    since: float | None = None,
    until: float | None = None,
) -> list[RecalledEpisode]:
    """Top-``k_s`` episodes by similarity plus ``k_c`` neighbours each side, in time order, with events.

    Three store calls whatever k_s and k_c: the similarity search, the neighbours, the events.
    """
    if k_s < 1:
        raise ValueError("k_s must be >= 1")
    hits = await store.search_episodes(
        query_vector, tenant_id=tenant_id, user_id=user_id, session_id=session_id, since=since, until=until, limit=k_s
    )
    pairs = [(h.episode, h.score) for h in hits]
    keys = neighbour_keys(pairs, k_c)
    found = await store.episodes_by_keys(tenant_id, keys, user_id=user_id) if keys else []
    neighbours: dict[Key, EpisodePoint] = {(e.session_id, e.episode_index): e for e in found}
    selection = select_contiguous(pairs, neighbours, k_c)

    event_ids = [e for s in selection for e in s.episode.event_ids]
    events = (
        {e.event_id: e for e in await store.events_by_ids(tenant_id, event_ids, user_id=user_id)} if event_ids else {}
    )
    out: list[RecalledEpisode] = []
    for s in selection:
        ep = s.episode
        found = sorted((events[e] for e in ep.event_ids if e in events), key=lambda e: e.ts)
        out.append(
            RecalledEpisode(
                tenant_id=ep.tenant_id,
                user_id=ep.user_id,
                session_id=ep.session_id,
                episode_index=ep.episode_index,
                start_ts=ep.start_ts,
                end_ts=ep.end_ts,
                state=ep.state,
                score=s.score,
                anchor_score=s.anchor_score,
                events=[_recalled(e) for e in found],
            )
        )
    return out
