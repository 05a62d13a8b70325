"""ReLoop2's constant-memory error memory (`SketchBackend`): per-tenant RACE sketches (`models.race_sketch`).

O(1) per write and read, memory independent of the stream, checkpointable to bytes. A sketch cannot forget
single samples, so each tenant holds a few rotating sub-sketches ("generations"); capacity and ttl drop
whole generations, oldest first, so no sample beyond capacity or older than ttl is ever read, at the price
of sometimes dropping younger ones early. It implements `models.error_memory.ErrorBackend`; the worker holds
one (`agents.compensate`), kept current by its errors stage.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memstream.models.compensation import CompensationConfig, NeighbourEstimate
from memstream.models.error_memory import Dropped
from memstream.models.error_policy import ErrorSample
from memstream.models.race_sketch import RaceSketch, SimHash, estimate_from_sums

__all__ = ["SketchBackend"]


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
        meta: dict[str, Any] = {
            "format": "memstream.sketch-backend/1",
            "config": self.config.model_dump(),
            "tenants": {},
        }
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
        # numpy's stub types **kwds against the keyword allow_pickle (bool) too; every key here is an array name
        np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]
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
