"""Exact cosine kNN error memory in numpy (`KnnBackend`): the reference `models.error_memory.ErrorBackend`.

Each tenant's samples sit in growable numpy columns in arrival order; a query is a brute-force matrix-vector
product over the live rows (keys are unit vectors), thresholded at ``min_similarity``, the best ``k`` kept
and weighted by `models.compensation.weighted_estimate`. Evictions name the samples they drop.

Used by the tests and the evaluation and benchmarks (through `models.error_memory.ErrorMemory`). The worker
does not hold samples in memory: its kNN path reads the store's ``errors`` collection (`agents.compensate`).
"""

from __future__ import annotations

import numpy as np

from memstream.models.compensation import CompensationConfig, NeighbourEstimate, weighted_estimate
from memstream.models.error_memory import Dropped
from memstream.models.error_policy import ErrorSample

__all__ = ["KnnBackend"]


class _Rows:
    """One tenant's samples in arrival order: growable numpy columns with a moving start."""

    def __init__(self, dim: int):
        self.dim = dim
        self.keys = np.zeros((64, dim), dtype=np.float32)
        self.labels = np.zeros(64)
        self.preds = np.zeros(64)
        self.ts = np.zeros(64)
        self.ids: list[str] = []
        self.start = 0  # rows before start are evicted
        self.pos: dict[str, int] = {}

    @property
    def end(self) -> int:
        return len(self.ids)

    def add(self, s: ErrorSample) -> None:
        if s.sample_id in self.pos:  # replay of a stored sample: overwrite in place
            i = self.pos[s.sample_id]
        else:
            i = self.end
            if i == len(self.labels):
                self._grow()
            self.ids.append(s.sample_id)
            self.pos[s.sample_id] = i
        self.keys[i], self.labels[i], self.preds[i], self.ts[i] = s.key, s.label, s.prediction, s.ts

    def _grow(self) -> None:
        n = 2 * len(self.labels)
        self.keys = np.resize(self.keys, (n, self.dim))
        self.labels, self.preds, self.ts = (np.resize(a, n) for a in (self.labels, self.preds, self.ts))

    def drop_front(self, count: int) -> tuple[str, ...]:
        gone = tuple(self.ids[self.start : self.start + count])
        for sid in gone:
            del self.pos[sid]
        self.start += len(gone)
        if self.start > 1024 and self.start * 2 > self.end:
            self._keep(np.ones(self.end - self.start, dtype=bool))
        return gone

    def drop_where(self, mask: np.ndarray) -> tuple[str, ...]:
        """Drop live rows where mask (over rows start..end) is True."""
        idx = np.flatnonzero(mask)
        if idx[-1] == len(idx) - 1:  # a prefix (arrival order ≈ time order): cheap front drop
            return self.drop_front(len(idx))
        gone = tuple(self.ids[self.start + k] for k in idx)
        self._keep(~mask)
        return gone

    def _keep(self, keep: np.ndarray) -> None:
        live = slice(self.start, self.end)
        idx = np.flatnonzero(keep)
        n = len(idx)
        self.keys[:n] = self.keys[live][idx]
        for a in (self.labels, self.preds, self.ts):
            a[:n] = a[live][idx]
        self.ids = [self.ids[self.start + i] for i in idx]
        self.pos = {sid: i for i, sid in enumerate(self.ids)}
        self.start = 0


class KnnBackend:
    """Exact cosine kNN over each tenant's stored samples (numpy brute force; keys are unit vectors)."""

    def __init__(self, config: CompensationConfig):
        self.config = config
        self._tenants: dict[str, _Rows] = {}

    def add(self, tenant_id: str, sample: ErrorSample) -> None:
        key = np.asarray(sample.key, dtype=np.float32).ravel()
        rows = self._tenants.get(tenant_id)
        if rows is None:
            rows = self._tenants[tenant_id] = _Rows(key.size)
        if key.size != rows.dim:
            raise ValueError(f"tenant {tenant_id!r} keys have {rows.dim} dims, got {key.size}")
        rows.add(sample)

    def neighbours(self, tenant_id: str, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row indices and cosine similarities of the ≤ k nearest samples at or above min_similarity."""
        rows = self._tenants.get(tenant_id)
        if rows is None or rows.end == rows.start:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        q = np.asarray(key, dtype=np.float32).ravel()
        if q.size != rows.dim:
            raise ValueError(f"tenant {tenant_id!r} keys have {rows.dim} dims, got {q.size}")
        sims = rows.keys[rows.start : rows.end] @ q
        cand = np.flatnonzero(sims >= self.config.min_similarity)  # score threshold first: cheap
        k = self.config.k
        if cand.size > k:
            cand = cand[np.argpartition(-sims[cand], k - 1)[:k]]
        top = cand[np.argsort(-sims[cand], kind="stable")]
        return top + rows.start, sims[top].astype(np.float64)

    def estimate(self, tenant_id: str, key: np.ndarray) -> NeighbourEstimate | None:
        idx, sims = self.neighbours(tenant_id, key)
        if idx.size == 0:
            return None
        rows = self._tenants[tenant_id]
        ids = [rows.ids[i] for i in idx]
        return weighted_estimate(sims, rows.labels[idx], rows.preds[idx], self.config.tau, ids)

    def size(self, tenant_id: str) -> int:
        rows = self._tenants.get(tenant_id)
        return 0 if rows is None else rows.end - rows.start

    def evict_oldest(self, tenant_id: str, keep: int) -> Dropped:
        excess = self.size(tenant_id) - keep
        if excess <= 0:
            return Dropped()
        gone = self._tenants[tenant_id].drop_front(excess)
        return Dropped(len(gone), gone)

    def expire(self, tenant_id: str, cutoff_ts: float) -> Dropped:
        rows = self._tenants.get(tenant_id)
        if rows is None or rows.end == rows.start:
            return Dropped()
        old = rows.ts[rows.start : rows.end] < cutoff_ts
        if not old.any():
            return Dropped()
        gone = rows.drop_where(old)
        return Dropped(len(gone), gone)

    def clear(self, tenant_id: str) -> Dropped:
        rows = self._tenants.pop(tenant_id, None)
        if rows is None:
            return Dropped()
        gone = tuple(rows.ids[rows.start :])
        return Dropped(len(gone), gone)
