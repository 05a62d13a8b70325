"""Stage ``errors``: feedback → the ReLoop2 error memory, each change announced on ``memory-updates``.

Consumes ``feedback`` (keyed tenant/user) in batches; invalid feedback is dead-lettered with its reason
and the stream goes on. A sample's key is `models.compensation.memory_key` of its features (texts
embedded in one batch per batch, numeric vectors as given) and its user: a hashed user block plus the
features fitted to the rest of ``store.dim``, so every layout fits the ``errors`` collection.

What to do with a sample is decided by `models.error_policy.ErrorPolicy` (a new model_version resets the
tenant, a retired version or an already expired sample is refused, capacity and ttl in event time), which
returns its decisions; `FeedbackWriter` applies them to the store, in order: a `ResetVersion` is
``delete_errors(except_model_version=new)``, stores (`StoreSample`) are ``upsert_errors``, and after each
batch ttl (`ExpireBefore`, the newest cutoff per tenant) is ``delete_errors(before=cutoff)`` and capacity
(`EvictOldest`) ``trim_errors``, once per tenant. Each write is announced after it is done
(``error_stored``, ``errors_reset``, ``errors_evicted``). With the sketch backend the same decisions also
feed the worker's sketch (see `agents.compensate`).

Version state (current and retired model_versions, event-time watermark) lives in a Faust table keyed
by tenant, changed in the same Kafka transaction as the batch's offsets (exactly_once). One tenant's
feedback arrives on several partitions and Faust keeps a table key per partition, so each partition has
its own view of the tenant's versions. The views converge: a reset deletes everything but the new version
(idempotent, with the same ``errors_reset`` update id from every partition) and serving filters by
model_version, so a partition that still sees the old version never changes answers for the new one.
Store writes are idempotent (point id = uuid5 of tenant and event id): a replayed batch rewrites the same
points and re-announces the same update ids. Transient store failures are retried until they pass
(`agents.retry`); a write the store refuses for good (bad data) dead-letters that partition's feedback of the
batch, with the reason, and the stream goes on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence

import faust
import numpy as np
import orjson
from faust.types import EventT

from memstream.agents.compensate import ErrorMemoryService, service
from memstream.agents.dead_letters import reject
from memstream.agents.faust_compat import as_current_event
from memstream.agents.retry import Refused, until_done
from memstream.agents.runtime import Runtime
from memstream.agents.store import ErrorPoint
from memstream.models.error_policy import (
    Decision,
    ErrorPolicy,
    ErrorSample,
    ExpireBefore,
    ResetVersion,
    StoreSample,
    VersionState,
)
from memstream.streams.codec import InvalidRecord, decode_feedback, encode
from memstream.streams.contracts import FeedbackEvent, MemoryUpdate, UpdateKind

STAGE = "errors"
log = logging.getLogger(__name__)

Announce = Callable[[bytes, MemoryUpdate], Awaitable[None]]


class FeedbackWriter:
    """Applies feedback to the error memory: policy, store writes, sketch, announcements (no Faust here)."""

    def __init__(self, runtime: Runtime, announce: Announce) -> None:
        self.runtime = runtime
        self.announce = announce
        self.config = runtime.settings.compensation
        self.memory_service: ErrorMemoryService = service(runtime)
        self._policy = ErrorPolicy(self.config)

    async def write(
        self, group: Sequence[tuple[FeedbackEvent, np.ndarray]], states: Mapping[str, VersionState], tag: str
    ) -> dict[str, VersionState]:
        """Write one partition's feedback (in offset order) given its tenants' version states; returns the
        new states. `tag` names the batch (partition:offset) in eviction update ids."""
        self._policy.restore_version_state(states)
        records: dict[tuple[str, str], FeedbackEvent] = {}
        decisions: list[Decision] = []
        for record, key in group:
            sample = ErrorSample(record.event_id, key, record.label, record.prediction, record.ts, record.model_version)
            decided = self._policy.write(record.tenant_id, sample)
            if decided.stored:
                records[(record.tenant_id, record.event_id)] = record
            else:
                log.info("feedback %s of tenant %s not stored: %s", record.event_id, record.tenant_id, decided.refused)
            decisions += decided.decisions
        tenants = list(dict.fromkeys(r.tenant_id for r, _ in group))
        await self._apply(decisions, records, tenants, tag)
        return self._policy.version_state()

    async def _apply(
        self,
        decisions: Sequence[Decision],
        records: Mapping[tuple[str, str], FeedbackEvent],
        tenants: list[str],
        tag: str,
    ) -> None:
        """Resets and stores in order; then per tenant the newest ttl cutoff and capacity, once per batch
        (every write decides `EvictOldest` with the same ``keep``: the configured capacity)."""
        store = await self.runtime.stage_store()
        svc = self.memory_service
        for tenant in tenants:  # before any write: a rebuild must read the store as it was
            await svc.ensure_tenant(tenant)
        pending: list[tuple[str, ErrorSample]] = []
        cutoffs: dict[str, float] = {}
        for decision in decisions:
            if isinstance(decision, StoreSample):
                pending.append((decision.tenant_id, decision.sample))
            elif isinstance(decision, ExpireBefore):
                cutoffs[decision.tenant_id] = max(decision.cutoff_ts, cutoffs.get(decision.tenant_id, -math.inf))
            elif isinstance(decision, ResetVersion):
                await self._store(pending, records)
                pending = []
                await self._reset(decision)
        await self._store(pending, records)
        for tenant in tenants:
            cutoff = cutoffs.get(tenant)
            expired = 0
            if cutoff is not None and math.isfinite(cutoff):
                expired = await until_done(
                    lambda: store.delete_errors(tenant, before=cutoff), f"expiring errors of {tenant}"
                )
            trimmed = await until_done(
                lambda: store.trim_errors(tenant, self.config.capacity), f"trimming errors of {tenant}"
            )
            svc.sketch_refresh(tenant, cutoff)
            state = self._policy.version_state()[tenant]  # every tenant of the group wrote to the policy
            for reason, count in (("ttl", expired), ("capacity", trimmed)):
                if count:
                    await self.announce(
                        tenant.encode(),
                        MemoryUpdate.make(
                            UpdateKind.ERRORS_EVICTED,
                            tenant,
                            [reason, tag],
                            state["watermark"] or 0.0,
                            payload={"reason": reason, "count": count, "model_version": state["current"]},
                        ),
                    )

    async def _reset(self, decision: ResetVersion) -> None:
        """The tenant's memory now belongs to a new model_version: delete the rest, reset the sketch, announce."""
        store = await self.runtime.stage_store()
        tenant, version = decision.tenant_id, decision.model_version
        removed = await until_done(
            lambda: store.delete_errors(tenant, except_model_version=version), f"resetting errors of {tenant}"
        )
        self.memory_service.sketch_reset(tenant, version)
        await self.announce(
            tenant.encode(),
            MemoryUpdate.make(
                UpdateKind.ERRORS_RESET,
                tenant,
                [version],
                decision.ts,
                payload={"model_version": version, "removed": removed},
            ),
        )

    async def _store(
        self, pending: list[tuple[str, ErrorSample]], records: Mapping[tuple[str, str], FeedbackEvent]
    ) -> None:
        if not pending:
            return
        latest = {(t, s.sample_id): (t, s) for t, s in pending}  # a duplicate in the batch: the last one wins
        store = await self.runtime.stage_store()
        svc = self.memory_service
        fresh: set[tuple[str, str]] = set(latest)
        if svc.sketch is not None:  # the sketch cannot forget: never add a sample it already holds
            for tenant in {t for t, _ in latest}:
                ids = [sid for t, sid in latest if t == tenant]
                fresh -= {(tenant, p.event_id) for p in await store.scroll_errors(tenant, event_ids=ids)}
        points = [_point(records[k], s) for k, (_, s) in latest.items()]
        await until_done(lambda: store.upsert_errors(points), f"writing {len(points)} error samples")
        for k, (tenant, sample) in latest.items():
            if k in fresh:
                svc.sketch_add(tenant, sample)
            record = records[k]
            await self.announce(
                record.key,
                MemoryUpdate.make(
                    UpdateKind.ERROR_STORED,
                    tenant,
                    [sample.sample_id],
                    sample.ts,
                    user_id=record.user_id,
                    payload={
                        "item_id": record.item_id,
                        "model_version": sample.model_version,
                        "label": sample.label,
                        "prediction": sample.prediction,
                    },
                ),
            )


def _point(record: FeedbackEvent, sample: ErrorSample) -> ErrorPoint:
    return ErrorPoint(
        tenant_id=record.tenant_id,
        user_id=record.user_id,
        item_id=record.item_id,
        event_id=record.event_id,
        model_version=record.model_version,
        label=record.label,
        prediction=record.prediction,
        ts=record.ts,
        vector=sample.key,
    )


def _by_partition(items: list[tuple[EventT, FeedbackEvent, np.ndarray]]):
    groups: dict[int, list[tuple[EventT, FeedbackEvent, np.ndarray]]] = {}
    for item in items:
        groups.setdefault(item[0].message.partition, []).append(item)
    return groups.items()


def register(app: faust.App, topics, runtime: Runtime) -> None:
    settings = runtime.settings
    stage = settings.errors
    metrics = runtime.metrics
    max_chars = settings.worker.max_text_chars
    versions = app.Table(
        f"{settings.worker.app_id}-errors-versions",
        partitions=settings.kafka.partitions,
        key_type=bytes,
        value_type=bytes,
    )  # tenant -> ErrorPolicy.version_state() of the tenant, as seen by one partition

    async def announce(key: bytes, update: MemoryUpdate) -> None:
        await topics.memory_updates.send(key=key, value=encode(update))

    writer = FeedbackWriter(runtime, announce)
    writer.memory_service.fed = True

    @app.agent(topics.feedback, name=f"{settings.worker.app_id}.errors")
    async def errors(stream: faust.StreamT) -> None:
        async for events in stream.take_events(stage.max_batch, within=stage.max_wait_s):
            metrics.received(STAGE, len(events))
            metrics.batch(STAGE, len(events))
            decoded: list[tuple[EventT, FeedbackEvent]] = []
            for event in events:
                try:
                    decoded.append((event, decode_feedback(event.value, max_text_chars=max_chars)))
                except InvalidRecord as exc:
                    await reject(topics, event, exc.reason, STAGE, metrics)
            forgotten = await runtime.forgotten()
            kept = [(e, r) for e, r in decoded if not forgotten.covers(r.tenant_id, r.user_id, r.ts)]
            metrics.forgotten(STAGE, len(decoded) - len(kept))
            decoded = kept
            if not decoded:
                continue
            keys = await writer.memory_service.keys(
                [(r.user_id, r.features.text, r.features.vector) for _, r in decoded]
            )
            accepted = []
            for (event, record), key in zip(decoded, keys):
                if isinstance(key, str):
                    await reject(topics, event, key, STAGE, metrics)
                else:
                    accepted.append((event, record, key))
            refused = 0
            for partition, group in _by_partition(accepted):
                last = group[-1][0]
                tenants = list(dict.fromkeys(r.tenant_id for _, r, _ in group))
                with as_current_event(last):
                    raw = {t: versions.get(t.encode()) for t in tenants}
                states = {t: orjson.loads(v) for t, v in raw.items() if v}
                try:
                    with metrics.store_timer("errors_write"):
                        states = await writer.write(
                            [(r, k) for _, r, k in group], states, f"{partition}:{last.message.offset}"
                        )
                except Refused as exc:  # bad data: this partition's feedback goes to dead-letters, the rest goes on
                    for event, _, _ in group:
                        await reject(topics, event, f"store refused the batch: {exc}", STAGE, metrics)
                    metrics.refused(STAGE, len(group))
                    refused += len(group)
                    continue
                with as_current_event(last):
                    for tenant in tenants:
                        versions[tenant.encode()] = orjson.dumps(states[tenant])
            metrics.sent(STAGE, len(accepted) - refused)
