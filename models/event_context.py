"""Search vectors of an episode's events: each event mixed with the turns around it, within its episode.

A turn in a conversation is often found by the words of the turns beside it (the question that prompted
an answer, the answer that follows a question). When an episode is sealed its members' search vectors
become ``own + beta · mean(previous, next)`` (a missing neighbour at either end counts as zero), for the
dense and the sparse vector alike. Scores are linear in document vectors, so the score of a mixed vector
is the same mix of the members' own scores. Neighbours stop at the episode's edges: the segmenter put a
boundary there because the topic changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from memstream.models.lexical import SparseVector, add_sparse

__all__ = ["context_vectors", "context_weights"]


def context_weights(n: int, beta: float) -> npt.NDArray[np.float64]:
    """Mixing matrix ``W`` (n×n) of ``n`` consecutive events: row i is event i plus ``beta`` times the mean
    of its two neighbours."""
    if n < 0:
        raise ValueError("n must be >= 0")
    w = np.eye(n, dtype=np.float64)
    for i in range(n):
        for j in (i - 1, i + 1):
            if 0 <= j < n:
                w[i, j] += beta / 2.0
    return w


def context_vectors(
    dense: np.ndarray, sparse: Sequence[SparseVector], beta: float
) -> tuple[npt.NDArray[np.float32], list[SparseVector]]:
    """The search vectors of an episode's events, given their own vectors in time order."""
    dense = np.asarray(dense, dtype=np.float32)
    n = dense.shape[0]
    if len(sparse) != n:
        raise ValueError(f"{n} dense vectors but {len(sparse)} sparse ones")
    w = context_weights(n, beta)
    mixed_dense = (w @ dense.astype(np.float64)).astype(np.float32)
    mixed_sparse = [
        add_sparse([sparse[int(j)] for j in np.flatnonzero(w[i])], [float(w[i, j]) for j in np.flatnonzero(w[i])])
        for i in range(n)
    ]
    return mixed_dense, mixed_sparse
