"""Serving ReLoop2 compensation: the Python API, ``POST /compensate/``, and the worker's RACE sketch.

A query is keyed exactly as the errors agent keys feedback (texts embedded in one batch, then
`models.compensation.memory_key`), the error memory is read, and ``clip(y_base + λ·y_err, 0, 1)`` comes
back. Two memories answer:

* ``knn``: the k nearest samples in the store's ``errors`` collection, filtered by tenant and
  model_version inside the store, weighted by softmax(sim/τ). Every worker can serve it.
* ``sketch``: a `models.sketch_backend.SketchBackend` (RACE) held in the worker, O(1) per read.

Checkpoint of the sketch: it has none of its own. The ``errors`` collection is the durable memory (every
live sample is written there before it is announced, also in sketch mode); the sketch is an index derived
from it. It is built per tenant the first time a process uses the tenant (the tenant's samples, oldest
first, of its newest model_version: at most 2·capacity points read once) and then kept current by the
errors agent of the same process, which feeds it the samples it writes. A restart, crash or rebalance
therefore loses nothing: the next process rebuilds from the collection. A snapshot file was not chosen:
it could not be kept consistent with the committed Kafka offsets without a transaction around it, and a
rebuild is cheap. With several workers, each one's sketch sees the other workers' feedback only as of its
rebuild, so serve ``knn`` (or route users to the worker that owns their partition) when that matters.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from faust.web import Request, Response
from faust.web.exceptions import ValidationError as WebValidationError

from memstream.agents.api_view import ApiView
from memstream.agents.http_body import json_body, validated
from memstream.models.compensation import Compensation, memory_key, weighted_estimate
from memstream.models.compensation import compensate as _compensate
from memstream.models.error_policy import ErrorSample
from memstream.models.sketch_backend import SketchBackend
from memstream.streams.access import Scope
from memstream.streams.api import CompensateBatchRequest, CompensateRequest

if TYPE_CHECKING:
    import faust

    from memstream.agents.auth import Guard
    from memstream.agents.runtime import Runtime
    from memstream.agents.store import MemoryStore

__all__ = ["CompensateError", "ErrorMemoryService", "compensate", "compensate_many", "register_views", "service"]


class CompensateError(ValueError):
    """A query this worker cannot answer as asked (HTTP 400)."""


def _has_text(text: str | None) -> bool:
    return text is not None and bool(text.strip())


class ErrorMemoryService:
    """One process's view of the error memory: keys, the optional sketch, and compensation."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.config = runtime.settings.compensation
        self.dim = runtime.settings.store.dim
        self.sketch: SketchBackend | None = (
            SketchBackend(self.config) if runtime.settings.errors.backend == "sketch" else None
        )
        self.fed = False  # True once this process runs the errors agent (which keeps the sketch current)
        self._versions: dict[str, str | None] = {}  # tenant -> model_version of its sketch
        self._locks: dict[str, asyncio.Lock] = {}

    # -- keys ------------------------------------------------------------------------------------
    async def keys(self, items: Sequence[tuple[str, str | None, Sequence[float] | None]]) -> list[np.ndarray | str]:
        """Memory keys of (user_id, text, vector) triples, texts embedded in one batch; a str says why a
        triple has no key."""
        texts = [text for _, text, _ in items if _has_text(text)]
        embedded = iter(await self.runtime.embed(texts)) if texts else iter(())
        out: list[np.ndarray | str] = []
        for user_id, text, vector in items:
            text_vector = next(embedded) if _has_text(text) else None
            try:
                out.append(memory_key(text_vector, vector, user_id, self.config, self.dim))
            except ValueError as exc:
                out.append(f"features: {exc}")
        return out

    # -- the sketch (see the module docstring) ----------------------------------------------------
    async def ensure_tenant(self, tenant_id: str) -> None:
        """Build the tenant's sketch from the errors collection unless this process already holds it."""
        if self.sketch is None or tenant_id in self._versions:
            return
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            if tenant_id in self._versions:
                return
            store = await self.runtime.store()
            points = await store.scroll_errors(tenant_id, limit=2 * self.config.capacity, with_vectors=True)
            version = points[-1].model_version if points else None
            for p in points:
                if p.model_version == version:
                    self.sketch.add(
                        tenant_id,
                        ErrorSample(p.event_id, np.asarray(p.vector), p.label, p.prediction, p.ts, p.model_version),
                    )
            self._versions[tenant_id] = version

    def sketch_add(self, tenant_id: str, sample: ErrorSample) -> None:
        """Add a newly stored sample to a built sketch (an unbuilt one reads it from the store when built).
        Only the sketch's model_version is added: another one comes from a partition that lags a reset."""
        if self.sketch is None or tenant_id not in self._versions:
            return
        current = self._versions[tenant_id]
        if current is None:
            self._versions[tenant_id] = current = sample.model_version
        if sample.model_version == current:
            self.sketch.add(tenant_id, sample)

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop the tenant's sketch (rebuilt from the store on next use): after ``forget``, a sketch that
        cannot subtract one user's samples must not keep answering with them."""
        if self.sketch is not None:
            self.sketch.clear(tenant_id)
            self._versions.pop(tenant_id, None)

    def sketch_reset(self, tenant_id: str, model_version: str) -> None:
        if self.sketch is not None:
            self.sketch.clear(tenant_id)
            self._versions[tenant_id] = model_version

    def sketch_refresh(self, tenant_id: str, cutoff_ts: float | None) -> None:
        """Apply capacity and ttl (whole generations, see SketchBackend)."""
        if self.sketch is not None:
            if cutoff_ts is not None:
                self.sketch.expire(tenant_id, cutoff_ts)
            self.sketch.evict_oldest(tenant_id, self.config.capacity)

    # -- compensation ----------------------------------------------------------------------------
    def _backend(self, asked: str | None) -> str:
        if asked is None:
            return "sketch" if self.sketch is not None and self.fed else "knn"
        if asked == "sketch" and (self.sketch is None or not self.fed):
            raise CompensateError(
                "the sketch backend is not served by this worker: it needs MEMSTREAM_ERRORS__BACKEND=sketch "
                "and the errors stage in the same worker"
            )
        return asked

    async def compensate_many(self, queries: Sequence[CompensateRequest]) -> list[dict[str, Any]]:
        """Compensate every query (one embedding batch for all their texts), answers in query order."""
        for i, q in enumerate(queries):
            if q.tenant_id is None:
                raise CompensateError(f"query {i}: tenant_id is required")
        backends = [self._backend(q.backend) for q in queries]
        keys = await self.keys([(q.user_id, q.features.text, q.features.vector) for q in queries])
        for i, key in enumerate(keys):
            if isinstance(key, str):
                raise CompensateError(f"query {i}: {key}")
        store = await self.runtime.store() if "knn" in backends else None
        answers = await asyncio.gather(
            *(
                self._knn(store, q, k) if b == "knn" else self._sketch(q, k)  # type: ignore[arg-type]
                for q, k, b in zip(queries, keys, backends)
            )
        )
        return [_result(c, b, q.model_version) for c, b, q in zip(answers, backends, queries)]

    async def _knn(self, store: MemoryStore, q: CompensateRequest, key: np.ndarray) -> Compensation:
        cfg = self.config
        hits = await store.search_errors(
            key, tenant_id=q.tenant_id, model_version=q.model_version, limit=cfg.k, score_threshold=cfg.min_similarity
        )
        estimate = weighted_estimate(
            np.array([h.score for h in hits]),
            np.array([h.error.label for h in hits]),
            np.array([h.error.prediction for h in hits]),
            cfg.tau,
            [h.error.event_id for h in hits],
        )
        return _compensate(q.y_base, estimate, cfg)

    async def _sketch(self, q: CompensateRequest, key: np.ndarray) -> Compensation:
        assert self.sketch is not None
        await self.ensure_tenant(q.tenant_id)
        same = self._versions.get(q.tenant_id) == q.model_version
        estimate = self.sketch.estimate(q.tenant_id, key) if same else None
        return _compensate(q.y_base, estimate, self.config)


def _result(c: Compensation, backend: str, model_version: str) -> dict[str, Any]:
    return {
        "y": c.y,
        "y_base": c.y_base,
        "y_err": c.y_err,
        "support": c.support,
        "compensated": c.compensated,
        "neighbour_ids": list(c.neighbour_ids),
        "backend": backend,
        "model_version": model_version,
    }


_services: weakref.WeakKeyDictionary[Runtime, ErrorMemoryService] = weakref.WeakKeyDictionary()


def service(runtime: Runtime) -> ErrorMemoryService:
    """The error-memory service of this runtime (one per worker, shared by the errors agent and the views)."""
    found = _services.get(runtime)
    if found is None:
        found = _services[runtime] = ErrorMemoryService(runtime)
    return found


# -- Python API ------------------------------------------------------------------------------------
async def compensate(
    runtime: Runtime,
    tenant_id: str,
    user_id: str,
    model_version: str,
    *,
    y_base: float,
    features_text: str | None = None,
    features_vector: Sequence[float] | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """Compensate one prediction: ``{"y", "y_base", "y_err", "support", "compensated", "neighbour_ids",
    "backend", "model_version"}``. Raises pydantic's ValidationError on bad input, CompensateError when
    the worker cannot serve the backend asked."""
    query = CompensateRequest.model_validate(
        {
            "tenant_id": tenant_id,
            "user_id": user_id,
            "model_version": model_version,
            "y_base": y_base,
            "features": {"text": features_text, "vector": None if features_vector is None else list(features_vector)},
            "backend": backend,
        }
    )
    return (await service(runtime).compensate_many([query]))[0]


async def compensate_many(
    runtime: Runtime, queries: Sequence[CompensateRequest | Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Compensate many predictions in one call (dicts are validated as CompensateRequest)."""
    checked = [q if isinstance(q, CompensateRequest) else CompensateRequest.model_validate(q) for q in queries]
    return await service(runtime).compensate_many(checked)


# -- HTTP ------------------------------------------------------------------------------------------
def register_views(app: faust.App, runtime: Runtime, guard: Guard) -> None:
    """``POST /compensate/``: one CompensateRequest, or ``{"queries": [...]}`` answered as ``{"results": [...]}``.
    Read scope; each query's tenant and user are checked against the caller's credential (agents/auth)."""
    metrics = runtime.metrics

    @app.page("/compensate/")
    class CompensateView(ApiView):
        async def post(self, request: Request) -> Response:
            caller = await guard.caller(request, limited=True)
            data = await json_body(request)
            batch = isinstance(data, dict) and "queries" in data
            asked = validated(data, CompensateBatchRequest).queries if batch else [validated(data, CompensateRequest)]
            queries = []
            for q in asked:
                who = caller.target(Scope.READ, q.tenant_id, q.user_id)
                queries.append(q.model_copy(update={"tenant_id": who.tenant_id, "user_id": who.user_id}))
            try:
                with metrics.store_timer("compensate"):
                    results = await service(runtime).compensate_many(queries)
            except CompensateError as exc:
                raise WebValidationError(str(exc)) from None
            return self.json({"results": results} if batch else results[0])
