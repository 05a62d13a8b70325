"""A store that fails on purpose: the fault-injection (chaos) wrapper the index and errors stages write through
when ``store_faults.rate`` > 0 (``MEMSTREAM_STORE_FAULTS__RATE``; off by default, a test and chaos knob).

:class:`FaultyStore` is a :class:`~agents.store.scoped.MemoryStore` over another one: every primitive is the
inner store's, and the two write primitives (upsert, delete) fail at random, seeded, as a Qdrant server
fails (the exception types are qdrant-client's):

* ``partial``: part of the points are written, then the connection drops (an upsert of n ≥ 2 points writes
  1 … n-1 of them; a delete is applied), like a batch cut mid-write;
* ``timeout``: the client times out; half the time the server had applied the write;
* ``unavailable``: a 5xx answer (500, 502, 503, 504), nothing written;
* ``permanent``: a ``ValueError`` (what bad data raises, e.g. a vector of the wrong size), nothing written;
* ``crash``: :class:`InjectedBug`, what a programming error looks like to a stage.

The first three are transient (`agents.retry.until_done` retries them: nothing may be lost), ``permanent``
makes the stage dead-letter the batch, ``crash`` crashes the agent and so the worker. Reads are never
faulted: the stages read outside their retries.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any, Literal, NoReturn, get_args

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from memstream.agents.store.base import Collection
from memstream.agents.store.schema import HybridQuery, NamedVectors
from memstream.agents.store.scope import Scope
from memstream.agents.store.scoped import Found, MemoryStore
from memstream.models.lexical import LexicalEncoder

__all__ = ["FaultKind", "FaultyStore", "InjectedBug", "StoreFaults"]

log = logging.getLogger(__name__)

FaultKind = Literal["partial", "timeout", "unavailable", "permanent", "crash"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


class InjectedBug(AssertionError):
    """The ``crash`` fault: an exception a stage does not expect (a programming error's kind)."""


class StoreFaults(BaseModel):
    """Fault injection into the index and errors stages' store writes: a test and chaos knob, off by default
    (``MEMSTREAM_STORE_FAULTS__RATE=0.3 MEMSTREAM_STORE_FAULTS__KINDS=partial,timeout,unavailable``)."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(
        0.0, ge=0, le=1, description="Test/chaos knob: share of store writes (upserts, deletes) that fail; 0 = off"
    )
    kinds: str = Field(
        "partial,timeout,unavailable",
        description="Comma-separated faults drawn from: partial (some points written, then the connection "
        "drops), timeout, unavailable (5xx), permanent (ValueError: the batch is dead-lettered), crash "
        "(an unexpected exception: the worker exits)",
    )
    seed: int = Field(0, description="Seed of the fault draws (each process draws its own sequence)")
    limit: int | None = Field(None, ge=0, description="Inject at most this many faults (None: no limit)")

    @field_validator("kinds")
    @classmethod
    def _known(cls, value: str) -> str:
        unknown = [k for k in value.split(",") if k.strip() not in FAULT_KINDS]
        if unknown or not value.strip():
            raise ValueError(f"unknown store fault kinds {unknown}; choose from {', '.join(FAULT_KINDS)}")
        return value

    @property
    def kind_list(self) -> list[str]:
        return [k.strip() for k in self.kinds.split(",")]

    @property
    def enabled(self) -> bool:
        return self.rate > 0 and self.limit != 0


def _timeout() -> ResponseHandlingException:
    return ResponseHandlingException(httpx.ReadTimeout("timed out (injected store fault)"))


def _dropped() -> ResponseHandlingException:
    return ResponseHandlingException(httpx.RemoteProtocolError("server disconnected mid-write (injected store fault)"))


def _server_error(status: int) -> UnexpectedResponse:
    return UnexpectedResponse(
        status_code=status,
        reason_phrase=httpx.codes.get_reason_phrase(status),
        content=b'{"status":{"error":"injected store fault"}}',
        headers=httpx.Headers(),
    )


class FaultyStore(MemoryStore):
    """``inner`` with seeded failures of its writes (see the module). Opening and closing are the inner
    store's (idempotent: a shared store stays its owner's to close). ``injected`` counts faults by kind."""

    def __init__(self, inner: MemoryStore, faults: StoreFaults) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.faults = faults
        self.injected: Counter[str] = Counter()
        self._rng = random.Random(faults.seed)
        self._kinds = faults.kind_list

    @property
    def lexical(self) -> LexicalEncoder:
        return self.inner.lexical

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    def _draw(self) -> str | None:
        """The fault of the next write, if any."""
        limit = self.faults.limit
        if limit is not None and sum(self.injected.values()) >= limit:
            return None
        if self._rng.random() >= self.faults.rate:
            return None
        kind = self._rng.choice(self._kinds)
        self.injected[kind] += 1
        return kind

    def _raise(self, kind: str, what: str, done: str) -> NoReturn:
        log.warning("injected store fault %s in %s (%s)", kind, what, done)
        if kind == "permanent":
            raise ValueError(f"injected permanent store error in {what}")
        if kind == "crash":
            raise InjectedBug(f"injected crash in {what}")
        if kind == "unavailable":
            raise _server_error(self._rng.choice([500, 502, 503, 504]))
        raise _timeout() if kind == "timeout" else _dropped()

    # -- writes: faulted ----------------------------------------------------------------------------------

    async def _upsert(
        self,
        collection: Collection,
        ids: list[str],
        vectors: np.ndarray,
        payloads: list[dict[str, Any]],
        named: list[NamedVectors] | None = None,
    ) -> None:
        kind = self._draw()
        if kind is None:
            return await self.inner._upsert(collection, ids, vectors, payloads, named)
        what = f"an upsert of {len(ids)} {collection.value}"
        written = 0
        if kind == "partial":
            written = self._rng.randint(1, len(ids) - 1) if len(ids) > 1 else 0
        elif kind == "timeout" and self._rng.random() < 0.5:
            written = len(ids)
        if written:
            part = slice(0, written)
            await self.inner._upsert(
                collection, ids[part], vectors[part], payloads[part], named[part] if named is not None else None
            )
        self._raise(kind, what, f"{written} of {len(ids)} points written")

    async def _delete(self, collection: Collection, where: Scope) -> int:
        kind = self._draw()
        if kind is None:
            return await self.inner._delete(collection, where)
        applied = kind == "partial" or (kind == "timeout" and self._rng.random() < 0.5)
        if applied:
            await self.inner._delete(collection, where)
        self._raise(kind, f"a delete of {collection.value}", "applied" if applied else "not applied")

    # -- reads: the inner store's ---------------------------------------------------------------------------

    async def _hybrid(self, collection: Collection, query: HybridQuery, where: Scope, corpus: Scope) -> list[Found]:
        return await self.inner._hybrid(collection, query, where, corpus)

    async def _scroll_page(self, collection: Collection, offset: Any, limit: int) -> tuple[list[Found], Any]:
        return await self.inner._scroll_page(collection, offset, limit)

    async def _query(
        self, collection: Collection, vector: list[float], where: Scope, limit: int, score_threshold: float | None
    ) -> list[Found]:
        return await self.inner._query(collection, vector, where, limit, score_threshold)

    async def _scroll(
        self, collection: Collection, where: Scope, limit: int, *, with_vectors: bool, oldest_first: bool = False
    ) -> list[Found]:
        return await self.inner._scroll(collection, where, limit, with_vectors=with_vectors, oldest_first=oldest_first)

    async def _count(self, collection: Collection, where: Scope) -> int:
        return await self.inner._count(collection, where)
