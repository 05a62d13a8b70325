"""Embedded backend: one qdrant-edge shard per collection under ``<path>/<collection>``.

qdrant-edge is Qdrant's engine in-process. Its calls hold the GIL while they run (an upsert of 128
points takes a few ms, with spikes of tens of ms when a segment grows), so every shard call runs on one
dedicated worker thread: the event loop never executes engine code, and the single thread serialises
access to the shards. Writes are cut into ``upsert_batch``-point calls so queries interleave with them.

No HNSW is built (``indexing_threshold=0``): building it holds the GIL for about a minute at 100k points.
Search is exact over the (small) appendable segments, and payload indexes make tenant/user/session
filtered search sub-millisecond. Only one opener per directory: a second one gets StoreLockedError.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import qdrant_edge as qe

from memstream.agents.store.base import (
    Collection,
    StoreClosedError,
    StoreConfig,
    StoreError,
    StoreLockedError,
    StoreSchemaError,
)
from memstream.agents.store.schema import CONTEXT, INDEXES, LEXICAL, HybridQuery, IndexKind, NamedVectors
from memstream.agents.store.scope import AnyOf, Condition, HasIds, Match, Range, Scope
from memstream.agents.store.scoped import Found, MemoryStore
from memstream.models.lexical import SparseVector

__all__ = ["EdgeStore", "compact_offline"]

T = TypeVar("T")

_CONFIG_FILE = "edge_config.json"


def _index_params(kind: IndexKind) -> Any:
    if kind == "tenant":
        return qe.KeywordIndexParams(is_tenant=True)
    if kind == "keyword":
        return qe.KeywordIndexParams()
    if kind == "float":
        return qe.FloatIndexParams()
    return qe.IntegerIndexParams(lookup=True, range=True)


def _condition(c: Condition) -> Any:
    if isinstance(c, Match):
        return qe.FieldCondition(c.key, match=qe.MatchValue(c.value))
    if isinstance(c, AnyOf):
        return qe.FieldCondition(c.key, match=qe.MatchAny(list(c.values)))
    if isinstance(c, Range):
        return qe.FieldCondition(c.key, range=qe.RangeFloat(gte=c.gte, lte=c.lte, lt=c.lt))
    if isinstance(c, HasIds):
        return qe.HasIdCondition(set(c.ids))
    raise TypeError(f"unknown condition {c!r}")


def _sparse(vector: SparseVector) -> Any:
    return qe.SparseVector(list(vector.indices), list(vector.values))


def _filter(where: Scope) -> Any:
    must = [_condition(c) for c in where.conditions]
    must_not = [_condition(c) for c in where.must_not]
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not or None)


class EdgeStore(MemoryStore):
    """The embedded default. Persistent on disk (WAL); survives close/reopen and hard exits."""

    def __init__(
        self, config: StoreConfig, *, state_dir: Path | str = Path("var/state"), migrate: bool = False
    ) -> None:
        """``migrate``: add missing hybrid-search vectors to an older store instead of refusing it (what
        `memstream store reindex` does before it backfills them)."""
        super().__init__(config)
        self._migrate = migrate
        self.path = config.edge_path(state_dir)
        self._shards: dict[Collection, Any] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- thread plumbing --------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            raise StoreClosedError(f"edge store at {self.path} is not open")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._pool, functools.partial(fn, *args))
        except RuntimeError as exc:  # the pool shut down between the check and the submit
            raise StoreClosedError(f"edge store at {self.path} is closed") from exc
        return await future

    def _shard(self, collection: Collection) -> Any:
        try:
            return self._shards[collection]
        except KeyError:
            raise StoreClosedError(f"edge store at {self.path} is not open") from None

    # -- lifecycle --------------------------------------------------------------------------------------

    def _edge_config(self, collection: Collection) -> Any:
        dense = qe.EdgeVectorParams(size=self.config.dim, distance=qe.Distance.Cosine)
        hybrid = collection is Collection.EVENTS
        return qe.EdgeConfig(
            vectors={"": dense, CONTEXT: qe.EdgeVectorParams(size=self.config.dim, distance=qe.Distance.Dot)}
            if hybrid
            else dense,
            sparse_vectors={LEXICAL: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)} if hybrid else None,
            # indexing_threshold=0: optimize() never builds HNSW, it only vacuums (see compact_offline).
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=0),
            max_search_threads=self.config.edge_search_threads,
        )

    def _lacks_hybrid_vectors(self, collection: Collection, directory: Path) -> bool:
        """Whether a shard is an older events shard of this store: its own vector of this dim, and no
        hybrid-search vector (or not both). Read from the shard's config file, before anything is changed."""
        if collection is not Collection.EVENTS:
            return False
        try:
            saved = json.loads((directory / _CONFIG_FILE).read_text())
        except (OSError, ValueError):
            return False
        vectors, sparse = saved.get("vectors") or {}, saved.get("sparse_vectors") or {}
        own = vectors.get("") or {}
        return own.get("size") == self.config.dim and (CONTEXT not in vectors or LEXICAL not in sparse)

    def _open_shard(self, collection: Collection) -> Any:
        directory = self.path / collection.value
        directory.mkdir(parents=True, exist_ok=True)
        config = self._edge_config(collection)
        try:
            if (directory / _CONFIG_FILE).exists():
                try:
                    shard = qe.EdgeShard.load(str(directory), config)
                except Exception as exc:
                    if "incompatible" not in str(exc) or not self._lacks_hybrid_vectors(collection, directory):
                        raise  # e.g. another dim: a StoreError below, and the shard is left as it was
                    if not self._migrate:
                        raise StoreSchemaError(
                            f"{directory} was written by an older memstream (no hybrid-search vectors): run "
                            "`memstream store reindex` once, with no worker running"
                        ) from exc
                    shard = qe.EdgeShard.load(str(directory))
                    shard.update(qe.UpdateOperation.create_dense_vector(CONTEXT, self.config.dim, qe.Distance.Dot))
                    shard.update(qe.UpdateOperation.create_sparse_vector(LEXICAL, modifier=qe.Modifier.Idf))
            else:
                shard = qe.EdgeShard.create(str(directory), config)
        except StoreSchemaError:
            raise
        except Exception as exc:  # the bindings raise plain Exception
            if "WouldBlock" in str(exc):
                raise StoreLockedError(
                    f"{directory} is already open (one opener per path: another process or EdgeStore holds it)"
                ) from exc
            raise StoreError(f"cannot open edge shard {directory}: {exc}") from exc
        try:
            existing = set(shard.info().payload_schema.keys())
            for field, kind in INDEXES[collection].items():
                if field not in existing:
                    shard.update(qe.UpdateOperation.create_field_index(field, _index_params(kind)))
        except Exception:
            shard.close()
            raise
        return shard

    def _open_all(self) -> None:
        try:
            for collection in Collection:
                self._shards[collection] = self._open_shard(collection)
        except BaseException:
            self._close_all()
            raise

    def _close_all(self) -> None:
        shards, self._shards = self._shards, {}
        for shard in shards.values():
            try:
                shard.flush()
            finally:
                shard.close()

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-edge")
        try:
            await self._run(self._open_all)
        except BaseException:
            self._pool.shutdown(wait=True)
            self._pool = None
            raise

    async def close(self) -> None:
        if self._pool is None:
            return
        try:
            await self._run(self._close_all)
        finally:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True)

    # -- primitives (each runs whole on the store thread) -----------------------------------------------

    async def _upsert(
        self,
        collection: Collection,
        ids: list[str],
        vectors: np.ndarray,
        payloads: list[dict[str, Any]],
        named: list[NamedVectors] | None = None,
    ) -> None:
        def work() -> None:
            rows: list[Any] = vectors.tolist()
            if named is not None:
                rows = [
                    {"": row, CONTEXT: n.context.tolist(), LEXICAL: _sparse(n.lexical)} for row, n in zip(rows, named)
                ]
            points = [qe.Point(i, v, p) for i, v, p in zip(ids, rows, payloads)]
            self._shard(collection).update(qe.UpdateOperation.upsert_points(points))

        await self._run(work)

    async def _query(
        self, collection: Collection, vector: list[float], where: Scope, limit: int, score_threshold: float | None
    ) -> list[Found]:
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vector),
            filter=_filter(where),
            with_payload=True,
            with_vector=False,
            score_threshold=score_threshold,
        )

        def work() -> list[Found]:
            return [(p.payload or {}, None, p.score) for p in self._shard(collection).query(request)]

        return await self._run(work)

    async def _hybrid(self, collection: Collection, query: HybridQuery, where: Scope, corpus: Scope) -> list[Found]:
        flt = _filter(where)
        prefetches = [
            qe.Prefetch(limit=query.candidates, query=qe.Query.Nearest(query.dense, using=CONTEXT), filter=flt)
        ]
        if len(query.lexical):
            prefetches.append(
                qe.Prefetch(
                    limit=query.candidates,
                    query=qe.Query.Nearest(_sparse(query.lexical), using=LEXICAL),
                    filter=flt,
                    params=qe.SearchParams(idf=qe.IdfParams(corpus=_filter(corpus))),
                )
            )
        request = qe.QueryRequest(
            limit=query.limit,
            query=qe.Fusion.Dbsf(),
            prefetches=prefetches,
            filter=flt,
            with_payload=True,
            with_vector=False,
        )

        def work() -> list[Found]:
            return [(p.payload or {}, None, p.score) for p in self._shard(collection).query(request)]

        return await self._run(work)

    async def _scroll_page(self, collection: Collection, offset: Any, limit: int) -> tuple[list[Found], Any]:
        request = qe.ScrollRequest(offset=offset, limit=limit, with_payload=True, with_vector=True)

        def work() -> tuple[list[Found], Any]:
            records, next_offset = self._shard(collection).scroll(request)
            return [(r.payload or {}, r.vector, None) for r in records], next_offset

        return await self._run(work)

    async def _scroll(
        self, collection: Collection, where: Scope, limit: int, *, with_vectors: bool, oldest_first: bool = False
    ) -> list[Found]:
        request = qe.ScrollRequest(
            limit=limit,
            filter=_filter(where),
            with_payload=True,
            with_vector=with_vectors,
            order_by=qe.OrderBy("ts", direction=qe.Direction.Asc) if oldest_first else None,
        )

        def work() -> list[Found]:
            records, _next = self._shard(collection).scroll(request)
            return [(r.payload or {}, r.vector if with_vectors else None, None) for r in records]

        return await self._run(work)

    async def _count(self, collection: Collection, where: Scope) -> int:
        request = qe.CountRequest(exact=True, filter=_filter(where))
        return await self._run(lambda: self._shard(collection).count(request))

    async def _delete(self, collection: Collection, where: Scope) -> int:
        flt = _filter(where)
        if flt is None:
            raise StoreError("refusing an unfiltered delete")

        def work() -> int:
            shard = self._shard(collection)
            matched = shard.count(qe.CountRequest(exact=True, filter=flt))
            if matched:
                shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
            return matched

        return await self._run(work)


def compact_offline(path: Path | str) -> dict[str, bool]:
    """Vacuum deleted points of a *closed* edge store (``optimize()`` per shard; no HNSW is built).

    Blocking and GIL-holding for as long as it runs: call it in its own process while no worker has the
    store open, never from a worker's event loop. Returns, per collection, whether anything was done.
    """
    done: dict[str, bool] = {}
    for collection in Collection:
        directory = Path(path) / collection.value
        if not (directory / _CONFIG_FILE).exists():
            continue
        shard = qe.EdgeShard.load(str(directory))
        try:
            done[collection.value] = bool(shard.optimize())
            shard.flush()
        finally:
            shard.close()
    return done
