"""The error memory's refresh policy: what each feedback sample does to a tenant's memory, as decisions.

`ErrorPolicy` holds only per-tenant version state (the model_version the memory belongs to, the retired
ones, the event-time watermark) and stores no sample. `ErrorPolicy.write` returns a `WriteDecision`:
whether the sample is accepted (or why it is refused) and the decisions the caller applies, in order:

1. `ResetVersion` — the tenant's feedback now carries a new, never-seen ``model_version``: drop everything
   the tenant holds (errors of the old model say nothing about the new one), the old version is retired;
2. `StoreSample` — store the sample (a sample_id already stored is overwritten);
3. `EvictOldest` — capacity: keep at most ``keep`` samples, oldest out;
4. `ExpireBefore` — ttl in event time: drop samples older than the tenant's watermark − ``ttl_s``
   (only with a ttl).

`ErrorPolicy.expire` (a sweep between writes) returns 3 and 4, `ErrorPolicy.reset` a `ClearTenant`. The
policy does not know how many samples a store holds, so capacity and ttl are decided on every write and
the store drops what they select (often nothing). Two callers apply the decisions:
`models.error_memory.ErrorMemory` to an in-process backend (tests, evaluation, benchmarks), and the
worker's errors stage (`agents.errors`) to the store's ``errors`` collection and the worker's sketch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypedDict

import numpy as np

from memstream.models.compensation import CompensationConfig

__all__ = [
    "ClearTenant",
    "Decision",
    "ErrorPolicy",
    "ErrorSample",
    "EvictOldest",
    "ExpireBefore",
    "Refusal",
    "ResetVersion",
    "StoreSample",
    "VersionState",
    "WriteDecision",
]

Refusal = Literal["retired_model_version", "expired"]


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
class StoreSample:
    """Store ``sample`` for the tenant (a sample_id already stored is overwritten where the store can)."""

    tenant_id: str
    sample: ErrorSample


@dataclass(frozen=True)
class ResetVersion:
    """Drop every sample the tenant holds: its memory now belongs to ``model_version``, first seen in a
    sample of event time ``ts`` (the `StoreSample` right after this one); ``retired`` is the old version."""

    tenant_id: str
    retired: str
    model_version: str
    ts: float


@dataclass(frozen=True)
class ClearTenant:
    """Drop every sample the tenant holds (`ErrorPolicy.reset`; the version state is kept)."""

    tenant_id: str
    model_version: str | None


@dataclass(frozen=True)
class EvictOldest:
    """Capacity: drop the tenant's oldest samples until at most ``keep`` remain."""

    tenant_id: str
    keep: int
    model_version: str | None


@dataclass(frozen=True)
class ExpireBefore:
    """ttl: drop the tenant's samples with ts < ``cutoff_ts`` (its event-time watermark − ttl)."""

    tenant_id: str
    cutoff_ts: float
    model_version: str | None


Decision = StoreSample | ResetVersion | ClearTenant | EvictOldest | ExpireBefore


@dataclass(frozen=True)
class WriteDecision:
    """Outcome of `ErrorPolicy.write`: accepted (with the decisions to apply, in order) or refused."""

    stored: bool
    decisions: tuple[Decision, ...] = ()
    refused: Refusal | None = None


class VersionState(TypedDict):
    """A tenant's version state as JSON (`ErrorPolicy.version_state`)."""

    current: str | None
    retired: list[str]
    watermark: float | None


@dataclass
class _TenantState:
    current: str | None = None  # the model_version the memory belongs to
    retired: list[str] = field(default_factory=list)
    watermark: float = -math.inf  # newest event time seen


class ErrorPolicy:
    """Decide what feedback does to the error memory: refresh by capacity, ttl and model_version.

    A tenant's memory belongs to one model_version. Feedback carrying a different, never-seen version
    resets it (`ResetVersion`) and retires the old version; late feedback for a retired version is
    refused rather than thrashing the memory.

    ttl runs on event time: the cutoff is the newest ts seen for the tenant (its watermark) minus
    ``ttl_s``, so out-of-order feedback is judged against the stream's progress, and a sample already
    older than the cutoff on arrival is refused.
    """

    def __init__(self, config: CompensationConfig, *, retired_kept: int = 16) -> None:
        self.config = config
        self._retired_kept = retired_kept
        self._tenants: dict[str, _TenantState] = {}

    def model_version(self, tenant_id: str) -> str | None:
        """The model_version the tenant's memory belongs to (None before its first sample)."""
        st = self._tenants.get(tenant_id)
        return None if st is None else st.current

    def write(self, tenant_id: str, sample: ErrorSample) -> WriteDecision:
        """Accept or refuse one feedback sample; an accepted one advances the tenant's version state."""
        st = self._tenants.setdefault(tenant_id, _TenantState())
        if sample.model_version in st.retired:
            return WriteDecision(stored=False, refused="retired_model_version")
        ttl = self.config.ttl_s
        if ttl is not None and sample.ts < st.watermark - ttl:
            return WriteDecision(stored=False, refused="expired")
        decisions: list[Decision] = []
        if sample.model_version != st.current:
            if st.current is not None:
                decisions.append(ResetVersion(tenant_id, st.current, sample.model_version, sample.ts))
                st.retired = (st.retired + [st.current])[-self._retired_kept :]
            st.current = sample.model_version
        decisions.append(StoreSample(tenant_id, sample))
        decisions += self._refresh(st, tenant_id, now=sample.ts)
        return WriteDecision(stored=True, decisions=tuple(decisions))

    def expire(self, tenant_id: str, now: float) -> tuple[Decision, ...]:
        """Capacity and ttl against ``now`` (event-time clock; for periodic sweeps between writes)."""
        st = self._tenants.get(tenant_id)
        if st is None:
            return ()
        return tuple(self._refresh(st, tenant_id, now=now))

    def reset(self, tenant_id: str) -> ClearTenant:
        """Forget the tenant's samples (its version state is kept)."""
        return ClearTenant(tenant_id, self.model_version(tenant_id))

    def _refresh(self, st: _TenantState, tenant_id: str, now: float) -> list[Decision]:
        st.watermark = max(st.watermark, now)
        out: list[Decision] = [EvictOldest(tenant_id, self.config.capacity, st.current)]
        if self.config.ttl_s is not None:
            out.append(ExpireBefore(tenant_id, st.watermark - self.config.ttl_s, st.current))
        return out

    # -- checkpoint of the per-tenant state --------------------------------------------------------
    def version_state(self) -> dict[str, VersionState]:
        """JSON-able per-tenant state (model versions, event-time watermark) to checkpoint beside the samples."""
        return {
            t: {
                "current": st.current,
                "retired": list(st.retired),
                "watermark": st.watermark if math.isfinite(st.watermark) else None,
            }
            for t, st in self._tenants.items()
        }

    def restore_version_state(self, state: Mapping[str, VersionState]) -> None:
        """Replace every tenant's version state by ``state`` (from `version_state`)."""
        self._tenants = {t: _restored(s) for t, s in state.items()}


def _restored(state: VersionState) -> _TenantState:
    watermark = state.get("watermark")
    return _TenantState(
        state.get("current"), list(state.get("retired", [])), -math.inf if watermark is None else float(watermark)
    )
