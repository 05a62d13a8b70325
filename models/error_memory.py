"""The refreshable error memory: per-tenant feedback samples behind one compensate/write API.

`ErrorMemory` owns the refresh policy — capacity per tenant (oldest out), ttl in event time, and a reset
when a tenant's feedback starts carrying a new ``model_version`` (errors of the old model say nothing
about the new one) — and reports every drop as an `Eviction` so the caller can announce it. Storage and
neighbour search are a backend's job (`ErrorBackend`):

* `KnnBackend` — exact cosine kNN over the stored samples in numpy; the reference used by tests and the
  evaluation. A Qdrant-backed store implements the same protocol over an ``errors`` collection: ``add``
  upserts a point (id uuid5(tenant, sample_id), payload tenant/model_version/label/prediction/ts),
  ``estimate`` runs ``query_points`` filtered by tenant (and model_version) with ``limit=k`` and
  ``score_threshold=min_similarity`` and hands the hits to `models.compensation.weighted_estimate`,
  ``evict_oldest`` scrolls ordered by ts, and ``expire``/``clear`` delete by filter.
* `SketchBackend` — ReLoop2's constant-memory LSH sketch (`models.race_sketch`), O(1) per write/read,
  checkpointable to bytes. It cannot forget single samples, so each tenant holds a few rotating
  sub-sketches ("generations"); capacity and ttl drop whole generations, oldest first, so no sample beyond
  capacity or older than ttl is ever read, at the price of sometimes dropping younger ones early.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from memstream.models.compensation import (
    Compensation,
    CompensationConfig,
    NeighbourEstimate,
    compensate,
    weighted_estimate,
)
from memstream.models.race_sketch import RaceSketch, SimHash, estimate_from_sums

__all__ = [
    "Dropped",
    "ErrorBackend",
    "ErrorMemory",
    "ErrorSample",
    "Eviction",
    "KnnBackend",
    "SketchBackend",
    "WriteResult",
]

EvictionReason = Literal["capacity", "ttl", "model_version", "reset"]


@dataclass(frozen=True)
class ErrorSample:
    """One feedback sample: the features' key, the observed label, the base model's prediction."""

    sample_id: str
    key: np.ndarray
    label: float
    prediction: float
    ts: float
    model_version: str


@dataclass(frozen=True)
class Dropped:
    """What a backend removed: how many samples, and their ids when it can name them."""

    count: int = 0
    sample_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Eviction:
    """Samples that left a tenant's memory, and why (announce as a memory update)."""

    tenant_id: str
    reason: EvictionReason
    model_version: str | None
    count: int
    sample_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class WriteResult:
    """Outcome of `ErrorMemory.write`: what was evicted, or why the sample was refused."""

    stored: bool
    evictions: tuple[Eviction, ...] = ()
    refused: Literal["retired_model_version", "expired"] | None = None


@runtime_checkable
class ErrorBackend(Protocol):
    """Per-tenant sample store with a neighbour estimate. The memory enforces policy; this stores."""

    def add(self, tenant_id: str, sample: ErrorSample) -> None:
        """Store a sample (a sample_id already stored is overwritten where the backend can)."""

    def estimate(self, tenant_id: str, key: np.ndarray) -> NeighbourEstimate | None:
        """Weighted label/prediction means of the samples near `key`; None if there are none."""

    def size(self, tenant_id: str) -> int:
        """Samples currently held for the tenant."""

    def evict_oldest(self, tenant_id: str, keep: int) -> Dropped:
        """Drop the oldest samples until at most `keep` remain."""

    def expire(self, tenant_id: str, cutoff_ts: float) -> Dropped:
        """Drop samples with ts < cutoff_ts."""

    def clear(self, tenant_id: str) -> Dropped:
        """Drop everything the tenant holds."""


# ---------------------------------------------------------------------------------------------------
# exact kNN in memory
# ---------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------
# RACE sketch
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Generation:
    sketch: RaceSketch
    count: int = 0
    oldest_ts: float = math.inf
    newest_ts: float = -math.inf


@dataclass
class _SketchTenant:
    generations: list[_Generation] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(g.count for g in self.generations)


class SketchBackend:
    """ReLoop2's LSH-sketch error memory: O(1) reads and writes, memory independent of the stream.

    Each tenant keeps up to ``sketch_generations`` (G) RACE sketches sharing one set of hyperplanes.
    Writes go to the newest; it is sealed after ``ceil(capacity / G)`` samples or ``ttl_s / G`` seconds of
    event time, and a fresh one opened. Reads sum the query's buckets over all generations. Eviction drops
    whole generations (oldest first), so a tenant holds between (G−1)/G·capacity and capacity samples,
    aged at most ttl. The sketch stores no ids: evictions report counts only, and replayed samples are
    counted again (checkpoint the sketch together with the consumer offsets).
    """

    def __init__(self, config: CompensationConfig):
        self.config = config
        self._hasher: SimHash | None = None
        self._tenants: dict[str, _SketchTenant] = {}

    def _hash(self, key: np.ndarray) -> np.ndarray:
        key = np.asarray(key, dtype=np.float32).ravel()
        if self._hasher is None:
            c = self.config
            self._hasher = SimHash(key.size, c.sketch_arrays, c.sketch_bits, c.seed)
        if key.size != self._hasher.dim:
            raise ValueError(f"sketch keys have {self._hasher.dim} dims, got {key.size}")
        return self._hasher.buckets(key)

    def _open(self, tenant: _SketchTenant) -> _Generation:
        assert self._hasher is not None
        gen = _Generation(RaceSketch(self._hasher))
        tenant.generations.append(gen)
        return gen

    def add(self, tenant_id: str, sample: ErrorSample) -> None:
        buckets = self._hash(sample.key)
        tenant = self._tenants.setdefault(tenant_id, _SketchTenant())
        c = self.config
        per_gen = math.ceil(c.capacity / c.sketch_generations)
        gen = tenant.generations[-1] if tenant.generations else self._open(tenant)
        span = None if c.ttl_s is None else c.ttl_s / c.sketch_generations
        if gen.count >= per_gen or (span is not None and gen.count and sample.ts - gen.oldest_ts >= span):
            gen = self._open(tenant)
        gen.sketch.add_at(buckets, sample.label, sample.prediction)
        gen.count += 1
        gen.oldest_ts = min(gen.oldest_ts, sample.ts)
        gen.newest_ts = max(gen.newest_ts, sample.ts)

    def estimate(self, tenant_id: str, key: np.ndarray) -> NeighbourEstimate | None:
        tenant = self._tenants.get(tenant_id)
        if tenant is None or not tenant.generations:
            return None
        buckets = self._hash(key)
        sums = sum(g.sketch.sums_at(buckets) for g in tenant.generations)
        return estimate_from_sums(np.asarray(sums), self.config.sketch_arrays)

    def size(self, tenant_id: str) -> int:
        tenant = self._tenants.get(tenant_id)
        return 0 if tenant is None else tenant.size

    def evict_oldest(self, tenant_id: str, keep: int) -> Dropped:
        tenant = self._tenants.get(tenant_id)
        dropped = 0
        while tenant is not None and tenant.size > keep and tenant.generations:
            dropped += tenant.generations.pop(0).count
        return Dropped(dropped)

    def expire(self, tenant_id: str, cutoff_ts: float) -> Dropped:
        tenant = self._tenants.get(tenant_id)
        dropped = 0
        while tenant is not None and tenant.generations and tenant.generations[0].oldest_ts < cutoff_ts:
            dropped += tenant.generations.pop(0).count
        return Dropped(dropped)

    def clear(self, tenant_id: str) -> Dropped:
        tenant = self._tenants.pop(tenant_id, None)
        return Dropped(0 if tenant is None else tenant.size)

    # -- checkpoint ------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """All tenants' generations and the shared hyperplanes, as one compressed npz blob."""
        meta: dict = {"format": "memstream.sketch-backend/1", "config": self.config.model_dump(), "tenants": {}}
        arrays: dict[str, np.ndarray] = {}
        if self._hasher is not None:
            arrays["planes"] = self._hasher.planes
            meta["dim"] = self._hasher.dim
        for t, (tenant_id, tenant) in enumerate(self._tenants.items()):
            gens = []
            for g, gen in enumerate(tenant.generations):
                name = f"t{t}g{g}"
                arrays[name] = gen.sketch.tables
                gens.append({"array": name, "count": gen.count, "oldest_ts": gen.oldest_ts, "newest_ts": gen.newest_ts})
            meta["tenants"][tenant_id] = gens
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, config: CompensationConfig | None = None) -> SketchBackend:
        """Restore a checkpoint (with its own config unless one is given; K, L and seed must match)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta.get("format") != "memstream.sketch-backend/1":
                raise ValueError(f"not a sketch-backend checkpoint: {meta.get('format')!r}")
            saved = CompensationConfig(**meta["config"])
            config = config or saved
            if (config.sketch_arrays, config.sketch_bits, config.seed) != (
                saved.sketch_arrays,
                saved.sketch_bits,
                saved.seed,
            ):
                raise ValueError("sketch shape/seed in config differ from the checkpoint")
            backend = cls(config)
            if "planes" in npz:
                backend._hasher = SimHash(
                    meta["dim"], config.sketch_arrays, config.sketch_bits, config.seed, planes=npz["planes"]
                )
            for tenant_id, gens in meta["tenants"].items():
                tenant = backend._tenants[tenant_id] = _SketchTenant()
                for g in gens:
                    assert backend._hasher is not None
                    sketch = RaceSketch(backend._hasher, tables=np.array(npz[g["array"]]), written=g["count"])
                    tenant.generations.append(_Generation(sketch, g["count"], g["oldest_ts"], g["newest_ts"]))
        return backend


# ---------------------------------------------------------------------------------------------------
# the memory
# ---------------------------------------------------------------------------------------------------
@dataclass
class _TenantState:
    current: str | None = None  # the model_version the memory belongs to
    retired: list[str] = field(default_factory=list)
    watermark: float = -math.inf  # newest event time seen


class ErrorMemory:
    """Write feedback, compensate predictions; refresh by capacity, ttl and model_version.

    A tenant's memory belongs to one model_version. Feedback carrying a different, never-seen version
    resets it (the evicted samples are reported with reason ``model_version``) and retires the old
    version; late feedback for a retired version is refused rather than thrashing the memory. A
    compensate call naming another version than the memory's gets the base prediction back.

    ttl runs on event time: the cutoff is the newest ts seen for the tenant (its watermark) minus
    ``ttl_s``, so out-of-order feedback is judged against the stream's progress, and a sample already
    older than the cutoff on arrival is refused.
    """

    def __init__(self, backend: ErrorBackend, config: CompensationConfig, *, retired_kept: int = 16):
        self.backend = backend
        self.config = config
        self._retired_kept = retired_kept
        self._tenants: dict[str, _TenantState] = {}

    def model_version(self, tenant_id: str) -> str | None:
        st = self._tenants.get(tenant_id)
        return None if st is None else st.current

    def write(self, tenant_id: str, sample: ErrorSample) -> WriteResult:
        """Store one feedback sample, then apply the refresh policy; returns what was evicted."""
        st = self._tenants.setdefault(tenant_id, _TenantState())
        if sample.model_version in st.retired:
            return WriteResult(stored=False, refused="retired_model_version")
        ttl = self.config.ttl_s
        if ttl is not None and sample.ts < st.watermark - ttl:
            return WriteResult(stored=False, refused="expired")
        evictions: list[Eviction] = []
        if sample.model_version != st.current:
            if st.current is not None:
                evictions += self._evicted(tenant_id, "model_version", st.current, self.backend.clear(tenant_id))
                st.retired = (st.retired + [st.current])[-self._retired_kept :]
            st.current = sample.model_version
        self.backend.add(tenant_id, sample)
        evictions += self._refresh(tenant_id, now=sample.ts)
        return WriteResult(stored=True, evictions=tuple(evictions))

    def expire(self, tenant_id: str, now: float) -> tuple[Eviction, ...]:
        """Apply ttl against `now` (event-time clock; for periodic sweeps between writes)."""
        if tenant_id not in self._tenants:
            return ()
        return tuple(self._refresh(tenant_id, now=now))

    def reset(self, tenant_id: str) -> Eviction | None:
        """Forget the tenant's samples (its version state is kept)."""
        ev = self._evicted(tenant_id, "reset", self.model_version(tenant_id), self.backend.clear(tenant_id))
        return ev[0] if ev else None

    def estimate(self, tenant_id: str, key: np.ndarray, model_version: str | None = None) -> NeighbourEstimate | None:
        """The backend's neighbour estimate, or None when the memory belongs to another model_version."""
        if model_version is not None and model_version != self.model_version(tenant_id):
            return None
        return self.backend.estimate(tenant_id, key)

    def compensate(
        self, tenant_id: str, key: np.ndarray, y_base: float, model_version: str | None = None
    ) -> Compensation:
        """``clip(y_base + λ·y_err, 0, 1)`` from the tenant's memory (see `models.compensation`)."""
        return compensate(y_base, self.estimate(tenant_id, key, model_version), self.config)

    def _refresh(self, tenant_id: str, now: float) -> list[Eviction]:
        st = self._tenants[tenant_id]
        st.watermark = max(st.watermark, now)
        out = self._evicted(
            tenant_id, "capacity", st.current, self.backend.evict_oldest(tenant_id, self.config.capacity)
        )
        if self.config.ttl_s is not None:
            cutoff = st.watermark - self.config.ttl_s
            out += self._evicted(tenant_id, "ttl", st.current, self.backend.expire(tenant_id, cutoff))
        return out

    @staticmethod
    def _evicted(tenant_id: str, reason: EvictionReason, version: str | None, dropped: Dropped) -> list[Eviction]:
        if dropped.count == 0:
            return []
        return [Eviction(tenant_id, reason, version, dropped.count, dropped.sample_ids)]

    # -- checkpoint of the per-tenant state (the backend checkpoints itself) ----------------------
    def version_state(self) -> dict[str, dict]:
        """JSON-able per-tenant state (model versions, event-time watermark) to checkpoint beside the backend."""
        return {
            t: {
                "current": st.current,
                "retired": list(st.retired),
                "watermark": st.watermark if math.isfinite(st.watermark) else None,
            }
            for t, st in self._tenants.items()
        }

    def restore_version_state(self, state: dict[str, dict]) -> None:
        self._tenants = {
            t: _TenantState(
                s.get("current"),
                list(s.get("retired", [])),
                -math.inf if s.get("watermark") is None else float(s["watermark"]),
            )
            for t, s in state.items()
        }
