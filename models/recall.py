"""Recall selection, pure: no store, no I/O.

Event mode (the default): the store ranks events by hybrid similarity (`agents.store` fuses dense and
lexical scores of each event's context vectors); :func:`within_budget` orders what is returned so that
the first B events are the best B for every B up to the budget: each hit, then up to ``episode_turns``
turns of its episode nearest to it in time, then the next hit.

Episode mode (the earlier two-stage recall, EM-LLM style):

Stage 1 (similarity) is the store's top-k_s episodes for the query. Stage 2 (contiguity) adds, for each
hit, the episodes within ``k_c`` places of it in the same session (indices i-k_c … i+k_c), because what
happened just before and after a remembered moment is usually needed to make sense of it.

Scores: a stage-1 hit keeps its similarity in ``score``; a neighbour gets ``score=None`` and inherits
``anchor_score``, the best similarity among the hits it is adjacent to (a hit's ``anchor_score`` is its
own score). The selection is deduplicated by (session_id, episode_index) and ordered in time.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field

__all__ = [
    "EpisodeLike",
    "Key",
    "RecallConfig",
    "Selected",
    "neighbour_keys",
    "select_contiguous",
    "within_budget",
]


class RecallConfig(BaseModel):
    """Recall defaults (settings ``MEMSTREAM_RECALL__*``; a request may override mode, budget, turns)."""

    mode: Literal["events", "episodes"] = Field(
        "events",
        description="events: hybrid search over events, episodes as context; episodes: the two-stage "
        "episode recall (top k_s episodes by centroid, k_c neighbours each)",
    )
    budget: int = Field(20, ge=1, le=1000, description="Events returned at most (event mode)")
    episode_turns: int = Field(
        0,
        ge=0,
        le=50,
        description="Event mode: turns of a hit's episode returned right after it (nearest in time "
        "first). On the LoCoMo dev set 1 scored below 0 at every budget (README, Recall quality)",
    )
    candidates: int = Field(
        400, ge=1, le=10_000, description="Events each of the dense and lexical searches passes to the fusion"
    )
    context_beta: float = Field(
        0.5,
        ge=0.0,
        le=4.0,
        description="Weight of an event's episode neighbours in its search vectors (set when "
        "its episode is sealed; change it, then run `memstream store reindex`)",
    )

    def with_request(
        self, mode: str | None = None, budget: int | None = None, episode_turns: int | None = None
    ) -> RecallConfig:
        """These defaults with what a request set (None: not set) in their place."""
        asked = {"mode": mode, "budget": budget, "episode_turns": episode_turns}
        return self.model_copy(update={k: v for k, v in asked.items() if v is not None})


H = TypeVar("H", bound=Hashable)


def within_budget(
    hits: Sequence[H], mates: Mapping[H, Sequence[H]], episode_turns: int, budget: int
) -> list[tuple[H, H | None]]:
    """``(item, hit it came with or None for a hit)`` in return order, at most ``budget`` of them.

    ``hits`` are best first; ``mates[hit]`` are the other turns of the hit's episode, nearest in time
    first. Each item appears once: a turn already returned is not returned again as a mate or a hit.
    """
    if budget < 0 or episode_turns < 0:
        raise ValueError("budget and episode_turns must be >= 0")
    out: list[tuple[H, H | None]] = []
    seen: set[H] = set()
    for hit in hits:
        if len(out) >= budget:
            break
        if hit in seen:
            continue
        out.append((hit, None))
        seen.add(hit)
        added = 0
        for mate in mates.get(hit, ()):
            if added >= episode_turns or len(out) >= budget:
                break
            if mate not in seen:
                out.append((mate, hit))
                seen.add(mate)
                added += 1
    return out


Key = tuple[str, int]
"""An episode within a tenant: (session_id, episode_index)."""


class EpisodeLike(Protocol):
    @property
    def session_id(self) -> str: ...

    @property
    def episode_index(self) -> int: ...

    @property
    def start_ts(self) -> float: ...


E = TypeVar("E", bound=EpisodeLike)


@dataclass(frozen=True, slots=True)
class Selected(Generic[E]):
    episode: E
    score: float | None
    """Similarity to the query for a stage-1 hit; None for an episode added for contiguity."""
    anchor_score: float
    """Best similarity among the hits this episode is (or is adjacent to); used to rank or trim."""

    @property
    def is_hit(self) -> bool:
        return self.score is not None


def _key(episode: EpisodeLike) -> Key:
    return (episode.session_id, int(episode.episode_index))


def _best_hits(hits: Sequence[tuple[E, float]]) -> dict[Key, tuple[E, float]]:
    best: dict[Key, tuple[E, float]] = {}
    for episode, score in hits:
        key = _key(episode)
        if key not in best or score > best[key][1]:
            best[key] = (episode, float(score))
    return best


def neighbour_keys(hits: Sequence[tuple[E, float]], k_c: int) -> list[Key]:
    """Keys stage 2 needs fetched: within ``k_c`` of a hit, same session, index ≥ 0, not a hit itself."""
    if k_c < 0:
        raise ValueError("k_c must be >= 0")
    hit_keys = set(_best_hits(hits))
    wanted: set[Key] = set()
    for session_id, index in hit_keys:
        for offset in range(-k_c, k_c + 1):
            key = (session_id, index + offset)
            if offset and key[1] >= 0 and key not in hit_keys:
                wanted.add(key)
    return sorted(wanted)


def select_contiguous(hits: Sequence[tuple[E, float]], neighbours: Mapping[Key, E], k_c: int) -> list[Selected[E]]:
    """Hits plus their stored neighbours, deduplicated, ordered by (start_ts, session, index).

    ``neighbours`` maps keys (from :func:`neighbour_keys`) to the episodes found; missing keys (the
    session's first/last episode, or not stored yet) are skipped.
    """
    best = _best_hits(hits)
    selected: dict[Key, Selected[E]] = {key: Selected(episode, score, score) for key, (episode, score) in best.items()}
    for key in neighbour_keys(hits, k_c):
        episode = neighbours.get(key)
        if episode is None:
            continue
        session_id, index = key
        anchors = [
            best[(session_id, index + offset)][1]
            for offset in range(-k_c, k_c + 1)
            if (session_id, index + offset) in best
        ]
        selected[key] = Selected(episode, None, max(anchors))
    return sorted(
        selected.values(),
        key=lambda s: (s.episode.start_ts, s.episode.session_id, s.episode.episode_index),
    )
