"""The refreshable error memory in one process: `models.error_policy.ErrorPolicy`'s decisions applied to a
backend, behind one compensate/write API.

`ErrorMemory` asks the policy what a sample does (reset on a new model_version, store, capacity, ttl),
applies each `models.error_policy.Decision` to its `ErrorBackend` (`apply_decision`), and reports every
drop as an `Eviction` so the caller can announce it. Storage and neighbour search are the backend's job:

* `models.knn_backend.KnnBackend` — exact cosine kNN in numpy; the reference used by tests, the
  evaluation and the benchmarks.
* `models.sketch_backend.SketchBackend` — ReLoop2's constant-memory RACE sketch.

The worker does not use `ErrorMemory`: its errors stage (`agents.errors`) applies the policy's decisions
to the store's ``errors`` collection and to its sketch itself, a batch at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, assert_never, runtime_checkable

import numpy as np

from memstream.models.compensation import Compensation, CompensationConfig, NeighbourEstimate, compensate
from memstream.models.error_policy import (
    ClearTenant,
    Decision,
    ErrorPolicy,
    ErrorSample,
    EvictOldest,
    ExpireBefore,
    Refusal,
    ResetVersion,
    StoreSample,
    VersionState,
)

__all__ = [
    "Dropped",
    "ErrorBackend",
    "ErrorMemory",
    "Eviction",
    "EvictionReason",
    "WriteResult",
    "apply_decision",
]

EvictionReason = Literal["capacity", "ttl", "model_version", "reset"]


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
    refused: Refusal | None = None


@runtime_checkable
class ErrorBackend(Protocol):
    """Per-tenant sample store with a neighbour estimate. The policy decides; this stores."""

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


def apply_decision(backend: ErrorBackend, decision: Decision) -> Eviction | None:
    """Apply one policy decision to ``backend``; the samples it dropped, if any, as an `Eviction`."""
    reason: EvictionReason
    version: str | None
    match decision:
        case StoreSample(tenant_id, sample):
            backend.add(tenant_id, sample)
            return None
        case ResetVersion(tenant_id, retired):
            reason, version, dropped = "model_version", retired, backend.clear(tenant_id)
        case ClearTenant(tenant_id, model_version):
            reason, version, dropped = "reset", model_version, backend.clear(tenant_id)
        case EvictOldest(tenant_id, keep, model_version):
            reason, version, dropped = "capacity", model_version, backend.evict_oldest(tenant_id, keep)
        case ExpireBefore(tenant_id, cutoff_ts, model_version):
            reason, version, dropped = "ttl", model_version, backend.expire(tenant_id, cutoff_ts)
        case _:
            assert_never(decision)
    if dropped.count == 0:
        return None
    return Eviction(decision.tenant_id, reason, version, dropped.count, dropped.sample_ids)


class ErrorMemory:
    """Write feedback, compensate predictions; refresh by capacity, ttl and model_version (`ErrorPolicy`).

    A compensate call naming another version than the memory's gets the base prediction back.
    """

    def __init__(self, backend: ErrorBackend, config: CompensationConfig, *, retired_kept: int = 16) -> None:
        self.backend = backend
        self.config = config
        self.policy = ErrorPolicy(config, retired_kept=retired_kept)

    def model_version(self, tenant_id: str) -> str | None:
        return self.policy.model_version(tenant_id)

    def write(self, tenant_id: str, sample: ErrorSample) -> WriteResult:
        """Store one feedback sample, then apply the refresh policy; returns what was evicted."""
        decided = self.policy.write(tenant_id, sample)
        return WriteResult(decided.stored, self.apply(decided.decisions), decided.refused)

    def expire(self, tenant_id: str, now: float) -> tuple[Eviction, ...]:
        """Apply capacity and ttl against `now` (event-time clock; for periodic sweeps between writes)."""
        return self.apply(self.policy.expire(tenant_id, now))

    def reset(self, tenant_id: str) -> Eviction | None:
        """Forget the tenant's samples (its version state is kept)."""
        return apply_decision(self.backend, self.policy.reset(tenant_id))

    def apply(self, decisions: Iterable[Decision]) -> tuple[Eviction, ...]:
        """Apply decisions in order; the evictions they caused."""
        return tuple(e for d in decisions if (e := apply_decision(self.backend, d)) is not None)

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

    # -- checkpoint of the per-tenant state (the backend checkpoints itself) ----------------------
    def version_state(self) -> dict[str, VersionState]:
        """JSON-able per-tenant state (model versions, event-time watermark) to checkpoint beside the backend."""
        return self.policy.version_state()

    def restore_version_state(self, state: Mapping[str, VersionState]) -> None:
        self.policy.restore_version_state(state)
