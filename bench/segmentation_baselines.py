"""Baseline segmenters for the segmentation evaluation: ``none``, ``random`` (gold count), ``fixed`` (gold
mean length), ``texttiling`` (Hearst's depth scores over the records' embeddings, cutoff mean − std/2) and
``texttiling_oracle`` (the gold number of deepest valleys). All but ``none`` and ``texttiling`` know
something of the gold segmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["BASELINES", "baseline_boundaries", "depth_scores", "gap_scores", "texttiling_boundaries"]

BASELINES = ("none", "random", "fixed", "texttiling", "texttiling_oracle")
TEXTTILING_BLOCK = 10  # sentences compared either side of a gap (NLTK's default block of 10 units)
TEXTTILING_SMOOTH = 3  # moving-average width over the gap scores
TEXTTILING_MIN_GAP = 3  # no two TextTiling boundaries closer than this (the deeper one wins)


def gap_scores(vectors: np.ndarray, block: int = TEXTTILING_BLOCK, smooth: int = TEXTTILING_SMOOTH) -> np.ndarray:
    """TextTiling lexical-cohesion curve on embeddings: score[i-1] = cos(mean before gap i, mean after)."""
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    csum = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    scores = np.empty(max(n - 1, 0))
    for i in range(1, n):
        lo, hi = max(0, i - block), min(n, i + block)
        left, right = csum[i] - csum[lo], csum[hi] - csum[i]
        scores[i - 1] = left @ right / (np.linalg.norm(left) * np.linalg.norm(right) + 1e-12)
    if smooth > 1 and scores.size >= smooth:
        padded = np.pad(scores, (smooth // 2, smooth - 1 - smooth // 2), mode="edge")
        scores = np.convolve(padded, np.ones(smooth) / smooth, mode="valid")
    return scores


def depth_scores(scores: np.ndarray) -> np.ndarray:
    """Hearst's depth: how far the curve climbs to the nearest peak on each side of each gap."""
    n = scores.size
    depth = np.zeros(n)
    for i in range(n):
        left = i
        while left > 0 and scores[left - 1] >= scores[left]:
            left -= 1
        right = i
        while right < n - 1 and scores[right + 1] >= scores[right]:
            right += 1
        depth[i] = (scores[left] - scores[i]) + (scores[right] - scores[i])
    return depth


def _pick(order: np.ndarray, count: int | None, min_gap: int) -> list[int]:
    chosen: list[int] = []
    for gap in order:
        if count is not None and len(chosen) >= count:
            break
        if all(abs(int(gap) - c) >= min_gap for c in chosen):
            chosen.append(int(gap))
    return sorted(g + 1 for g in chosen)  # gap i-1 sits before record i


def texttiling_boundaries(vectors: np.ndarray, count: int | None = None) -> list[int]:
    """TextTiling over embeddings: valleys deeper than mean − std/2 of the valley depths, or, told
    ``count``, the ``count`` deepest valleys (then the deepest other gaps if valleys run out)."""
    if vectors.shape[0] < 3:
        return []
    scores = gap_scores(vectors)
    depth = depth_scores(scores)
    n = scores.size
    valley = np.array(
        [(i == 0 or scores[i] < scores[i - 1]) and (i == n - 1 or scores[i] <= scores[i + 1]) for i in range(n)]
    )
    valley &= depth > 0
    if count is None:
        if not valley.any():
            return []
        cutoff = depth[valley].mean() - depth[valley].std() / 2.0
        keep = np.flatnonzero(valley & (depth > cutoff))
        return _pick(keep[np.argsort(-depth[keep], kind="stable")], None, TEXTTILING_MIN_GAP)
    ranked = np.lexsort((-depth, ~valley))  # valleys first, deepest first
    return _pick(ranked, count, TEXTTILING_MIN_GAP)


def baseline_boundaries(method: str, vectors: np.ndarray, gold: Sequence[int], rng: np.random.Generator) -> list[int]:
    n = vectors.shape[0]
    if method == "none":
        return []
    if method == "random":
        return sorted(rng.choice(np.arange(1, n), size=min(len(gold), n - 1), replace=False).tolist())
    if method == "fixed":
        step = max(1, int(round(n / (len(gold) + 1))))
        return list(range(step, n, step))
    if method == "texttiling":
        return texttiling_boundaries(vectors)
    if method == "texttiling_oracle":
        return texttiling_boundaries(vectors, count=len(gold))
    raise ValueError(f"unknown method {method!r}")
