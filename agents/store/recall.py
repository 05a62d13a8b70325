"""Recall over a :class:`~agents.store.base.MemoryStore`: similarity hits, their temporal neighbours,
and each selected episode's events. The selection itself is :mod:`models.recall` (pure).

Neighbours are context of a hit: they are fetched from the hit's session whatever the time window, and
the user filter is implied (a session belongs to one user).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from numpy.typing import ArrayLike

from agents.store.base import EpisodePoint, EpisodeState, MemoryStore
from models.recall import Key, neighbour_keys, select_contiguous

__all__ = ["RecalledEpisode", "RecalledEvent", "recall"]


@dataclass(frozen=True, slots=True)
class RecalledEvent:
    event_id: str
    ts: float
    text: str
    role: str


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
    found = await store.episodes_by_keys(tenant_id, keys) if keys else []
    neighbours: dict[Key, EpisodePoint] = {(e.session_id, e.episode_index): e for e in found}
    selection = select_contiguous(pairs, neighbours, k_c)

    event_ids = [e for s in selection for e in s.episode.event_ids]
    events = {e.event_id: e for e in await store.events_by_ids(tenant_id, event_ids)} if event_ids else {}
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
                events=[RecalledEvent(e.event_id, e.ts, e.text, e.role) for e in found],
            )
        )
    return out
