"""Two-stage recall selection (EM-LLM style), pure: no store, no I/O.

Stage 1 (similarity) is the store's top-k_s episodes for the query. Stage 2 (contiguity) adds, for each
hit, the episodes within ``k_c`` places of it in the same session (indices i-k_c … i+k_c), because what
happened just before and after a remembered moment is usually needed to make sense of it.

Scores: a stage-1 hit keeps its similarity in ``score``; a neighbour gets ``score=None`` and inherits
``anchor_score``, the best similarity among the hits it is adjacent to (a hit's ``anchor_score`` is its
own score). The selection is deduplicated by (session_id, episode_index) and ordered in time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Mapping, Protocol, Sequence, TypeVar

__all__ = ["EpisodeLike", "Key", "Selected", "neighbour_keys", "select_contiguous"]

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


def select_contiguous(
    hits: Sequence[tuple[E, float]], neighbours: Mapping[Key, E], k_c: int
) -> list[Selected[E]]:
    """Hits plus their stored neighbours, deduplicated, ordered by (start_ts, session, index).

    ``neighbours`` maps keys (from :func:`neighbour_keys`) to the episodes found; missing keys (the
    session's first/last episode, or not stored yet) are skipped.
    """
    best = _best_hits(hits)
    selected: dict[Key, Selected[E]] = {
        key: Selected(episode, score, score) for key, (episode, score) in best.items()
    }
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
