"""Boundary refinement (EM-LLM): slide each boundary to where the event-similarity graph splits best.

The events around a boundary form a weighted graph (edge = similarity). Cutting the contiguous run of
events ``[0, n)`` at ``p`` gives two communities ``[0, p)`` and ``[p, n)``; refinement picks, among the
candidates within ``radius`` of the provisional boundary, the ``p`` that maximises the graph's
modularity (Newman) or minimises the cut's conductance. Boundaries move, they are never added or
removed. All functions are O(n²) once (2-D prefix sums), then O(1) per candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["Objective", "best_split", "refine_boundaries", "similarity_graph", "split_scores"]

Objective = Literal["modularity", "conductance"]


def similarity_graph(vectors: np.ndarray, floor: float = 0.0) -> npt.NDArray[np.float64]:
    """Adjacency of unit ``vectors``: cosine similarity minus ``floor``, negatives cut to 0, no loops."""
    x = np.asarray(vectors, dtype=np.float64)
    adj = x @ x.T - floor
    np.maximum(adj, 0.0, out=adj)
    np.fill_diagonal(adj, 0.0)
    return adj


def split_scores(
    adj: np.ndarray, candidates: Sequence[int] | np.ndarray, objective: Objective = "modularity"
) -> npt.NDArray[np.float64]:
    """Objective of cutting the graph into ``[0, p)`` | ``[p, n)`` for each ``p`` in ``candidates``.

    Higher is better for both objectives: modularity Q(p), or minus the conductance
    ``cut(p) / min(vol_left, vol_right)``. A graph without edges scores 0 everywhere.
    """
    a = np.asarray(adj, dtype=np.float64)
    n = a.shape[0]
    p = np.asarray(candidates, dtype=np.int64)
    if p.size and (p.min() < 1 or p.max() > n - 1):
        raise ValueError(f"split points must lie in [1, {n - 1}]")
    prefix = np.zeros((n + 1, n + 1))
    prefix[1:, 1:] = a.cumsum(0).cumsum(1)
    two_m = prefix[n, n]
    if two_m <= 0.0:
        return np.zeros(p.size)
    inner_left = prefix[p, p]
    cross = prefix[p, n] - prefix[p, p]  # weight between [0,p) and [p,n)
    vol_left = inner_left + cross
    vol_right = two_m - vol_left
    if objective == "modularity":
        inner_right = two_m - inner_left - 2.0 * cross
        modularity: npt.NDArray[np.float64] = (inner_left + inner_right) / two_m - (
            vol_left**2 + vol_right**2
        ) / two_m**2  # indexing `prefix` is Any in numpy's stubs
        return modularity
    if objective == "conductance":
        smaller = np.minimum(vol_left, vol_right)
        conductance: npt.NDArray[np.float64] = np.divide(cross, smaller, out=np.ones_like(cross), where=smaller > 0)
        return -conductance
    raise ValueError(f"unknown objective {objective!r} (modularity or conductance)")


def best_split(
    adj: np.ndarray,
    candidates: Sequence[int] | np.ndarray,
    objective: Objective = "modularity",
    prefer: int | None = None,
) -> int:
    """The candidate with the best objective; ties go to the one nearest ``prefer`` (then the earliest)."""
    cands = np.asarray(candidates, dtype=np.int64)
    if cands.size == 0:
        raise ValueError("no candidate split point")
    scores = split_scores(adj, cands, objective)
    top = scores.max()
    tied = cands[scores >= top - 1e-12 * max(1.0, abs(top))]
    if prefer is None:
        return int(tied[0])
    return int(tied[np.argmin(np.abs(tied - prefer))])


def refine_boundaries(
    adj: np.ndarray,
    boundaries: Sequence[int],
    radius: int,
    objective: Objective = "modularity",
    min_len: int = 1,
) -> list[int]:
    """Refine sorted ``boundaries`` (indices that open a segment, 0 excluded) of a graph over ``n`` events.

    Left to right, each boundary is moved within ``±radius`` to the best split of the events between
    its (already refined) left neighbour and its right neighbour, keeping every segment ≥ ``min_len``.
    The number and order of boundaries never change.
    """
    a = np.asarray(adj, dtype=np.float64)
    n = a.shape[0]
    out = [int(b) for b in boundaries]
    for i, b in enumerate(out):
        lo = out[i - 1] if i > 0 else 0
        hi = out[i + 1] if i + 1 < len(out) else n
        first = max(b - radius, lo + min_len)
        last = min(b + radius, hi - min_len)
        if first > last:
            continue
        cands = np.arange(first, last + 1) - lo
        out[i] = lo + best_split(a[lo:hi, lo:hi], cands, objective, prefer=b - lo)
    return out
