"""Segmentation metrics of one stream: Pk, WindowDiff and boundary precision/recall/F1.

- Pk and WindowDiff (``nltk.metrics.segmentation``), k = half the stream's mean gold segment length (as
  SeCom and SuperDialseg compute them per dialogue);
- boundary F1: a predicted boundary within ±``tolerance`` records of a gold one is correct (precision),
  a gold boundary within ±``tolerance`` of a predicted one is found (recall); also exact (±0) and ±1 F1.

A boundary is the index of the record that opens a segment (0 < b < n).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["TOLERANCE", "boundary_prf", "stream_metrics", "window_k"]

TOLERANCE = 3


def _mask(boundaries: Sequence[int], n: int) -> str:
    marks = ["0"] * n
    for b in boundaries:
        if 0 < b < n:
            marks[b] = "1"
    return "".join(marks)


def window_k(gold: Sequence[int], n: int) -> int:
    """Half the mean gold segment length, at least 2 and below n."""
    return int(max(2, min(n - 1, round(n / (len(gold) + 1) / 2.0))))


def boundary_prf(pred: Sequence[int], gold: Sequence[int], tolerance: int = TOLERANCE) -> tuple[float, float, float]:
    """(precision, recall, F1) with ±tolerance matching, precision and recall matched separately."""
    p, g = np.asarray(sorted(set(pred)), dtype=np.int64), np.asarray(sorted(set(gold)), dtype=np.int64)
    if g.size == 0:
        return (1.0, 1.0, 1.0) if p.size == 0 else (0.0, 1.0, 0.0)
    if p.size == 0:
        return 0.0, 0.0, 0.0
    near = np.abs(p[:, None] - g[None, :]) <= tolerance
    precision, recall = float(near.any(1).mean()), float(near.any(0).mean())
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f1


def stream_metrics(pred: Sequence[int], gold: Sequence[int], n: int, tolerance: int = TOLERANCE) -> dict[str, float]:
    """Pk, WindowDiff, precision/recall/F1 at ±``tolerance``, and F1 exact (``f1_exact``) and at ±1 (``f1_tol1``)."""
    from nltk.metrics.segmentation import pk, windowdiff

    ref, hyp = _mask(gold, n), _mask(pred, n)
    k = window_k(gold, n)
    inside = [b for b in pred if 0 < b < n]
    precision, recall, f1 = boundary_prf(inside, gold, tolerance)
    return {
        "pk": float(pk(ref, hyp, k=k, boundary="1")),
        "windowdiff": float(windowdiff(ref, hyp, k, boundary="1")),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "f1_exact": boundary_prf(inside, gold, 0)[2],
        "f1_tol1": boundary_prf(inside, gold, 1)[2],
    }
