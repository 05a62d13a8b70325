"""EM-LLM's boundary rule: an event opens an episode when its surprise is an outlier of the recent ones.

Event t is a boundary when ``surprise_t > mean + gamma·std`` of the previous ``window`` surprises and
the current episode already holds ``min_len`` events; an episode that reaches ``max_len`` events is
closed whatever the surprise. Warm-up: with fewer than ``warmup`` previous surprises no threshold is
defined yet, and only the ``max_len`` rule can cut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["detect_boundaries", "exceeds", "threshold"]


def threshold(history: Sequence[float] | np.ndarray, gamma: float, warmup: int = 2) -> float:
    """``mean + gamma·std`` (population std) of ``history``; ``inf`` while it holds < ``warmup`` values."""
    values = np.asarray(history, dtype=np.float64)
    if values.size < max(warmup, 1):
        return math.inf
    return float(values.mean() + gamma * values.std())


def exceeds(score: float, history: Sequence[float] | np.ndarray, gamma: float, warmup: int = 2) -> bool:
    """True when ``score`` is above the threshold of ``history`` (the previous surprises)."""
    return score > threshold(history, gamma, warmup)


def detect_boundaries(
    scores: Sequence[float] | np.ndarray,
    *,
    gamma: float,
    window: int,
    min_len: int = 1,
    max_len: int | None = None,
    warmup: int = 2,
) -> list[int]:
    """Offline reference of the rule over a whole sequence: indices that open a new episode.

    ``scores[t]`` is the surprise of event t (``scores[0]`` is ignored: event 0 opens the first
    episode). The history is the previous ``window`` scores of the whole sequence, across episodes.
    """
    s = np.asarray(scores, dtype=np.float64)
    boundaries: list[int] = []
    start = 0
    for t in range(1, s.size):
        history = s[max(1, t - window) : t]
        length = t - start
        if (length >= min_len and exceeds(float(s[t]), history, gamma, warmup)) or (
            max_len is not None and length >= max_len
        ):
            boundaries.append(t)
            start = t
    return boundaries
