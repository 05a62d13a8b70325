"""Server backend: a Qdrant server reached with ``AsyncQdrantClient`` (URL + API key); every worker writes.

Collections and payload indexes are created idempotently on ``open()`` (two workers racing is fine).
Tests drive this same code path with qdrant-client's local mode (``location=":memory:"``), which
accepts but ignores payload indexes.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from memstream.agents.store.base import Collection, StoreClosedError, StoreConfig, StoreError, StoreSchemaError
from memstream.agents.store.schema import CONTEXT, INDEXES, LEXICAL, HybridQuery, IndexKind, NamedVectors
from memstream.agents.store.scope import AnyOf, Condition, HasIds, Match, Range, Scope
from memstream.agents.store.scoped import Found, MemoryStore
from memstream.models.lexical import SparseVector

__all__ = ["ServerStore"]


def _index_schema(kind: IndexKind) -> Any:
    if kind == "tenant":
        return models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
    if kind == "keyword":
        return models.PayloadSchemaType.KEYWORD
    if kind == "float":
        return models.PayloadSchemaType.FLOAT
    return models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=True, range=True)


def _condition(c: Condition) -> Any:
    if isinstance(c, Match):
        return models.FieldCondition(key=c.key, match=models.MatchValue(value=c.value))
    if isinstance(c, AnyOf):
        return models.FieldCondition(key=c.key, match=models.MatchAny(any=list(c.values)))
    if isinstance(c, Range):
        return models.FieldCondition(key=c.key, range=models.Range(gte=c.gte, lte=c.lte, lt=c.lt))
    if isinstance(c, HasIds):
        return models.HasIdCondition(has_id=list(c.ids))
    raise TypeError(f"unknown condition {c!r}")


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _filter(where: Scope) -> models.Filter | None:
    must = [_condition(c) for c in where.conditions]
    must_not = [_condition(c) for c in where.must_not]
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


class ServerStore(MemoryStore):
    """Qdrant server backend. Pass ``client`` to use one you made (tests: ``location=":memory:"``)."""

    def __init__(self, config: StoreConfig, *, client: AsyncQdrantClient | None = None, migrate: bool = False) -> None:
        """``migrate``: add missing hybrid-search vectors to an older events collection instead of refusing
        it (`memstream store reindex`; a server needs Qdrant ≥ 1.18 for that)."""
        super().__init__(config)
        self._migrate = migrate
        self._client: AsyncQdrantClient | None = client
        self._owns_client = client is None
        self._open = False

    def name(self, collection: Collection) -> str:
        return f"{self.config.collection_prefix}{collection.value}"

    @property
    def client(self) -> AsyncQdrantClient:
        if not self._open or self._client is None:
            raise StoreClosedError("server store is not open")
        return self._client

    # -- lifecycle --------------------------------------------------------------------------------------

    def _make_client(self) -> AsyncQdrantClient:
        cfg = self.config
        if not cfg.url:
            raise StoreError("store.url is required for the server backend (MEMSTREAM_STORE__URL)")
        if cfg.url == ":memory:":
            return AsyncQdrantClient(location=":memory:")
        return AsyncQdrantClient(
            url=cfg.url,
            api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
            prefer_grpc=cfg.prefer_grpc,
            timeout=int(cfg.timeout_s),
        )

    async def _ensure_collection(self, client: AsyncQdrantClient, collection: Collection) -> None:
        name = self.name(collection)
        dense = models.VectorParams(size=self.config.dim, distance=models.Distance.COSINE)
        hybrid = collection is Collection.EVENTS
        if not await client.collection_exists(name):
            try:
                await client.create_collection(
                    name,
                    vectors_config={
                        "": dense,
                        CONTEXT: models.VectorParams(size=self.config.dim, distance=models.Distance.DOT),
                    }
                    if hybrid
                    else dense,
                    sparse_vectors_config={LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)}
                    if hybrid
                    else None,
                )
            except UnexpectedResponse as exc:  # another worker created it first
                if not await client.collection_exists(name):
                    raise StoreError(f"cannot create collection {name}: {exc}") from exc
        info = await client.get_collection(name)
        vectors = info.config.params.vectors
        own = vectors.get("") if isinstance(vectors, dict) else vectors
        size = own.size if isinstance(own, models.VectorParams) else None
        if size != self.config.dim:
            raise StoreError(f"collection {name} holds vectors of size {size}, expected {self.config.dim}")
        if hybrid:
            await self._ensure_hybrid_vectors(client, name, vectors, info.config.params.sparse_vectors or {})
        existing = set((info.payload_schema or {}).keys())
        for field, kind in INDEXES[collection].items():
            if field in existing:
                continue
            with warnings.catch_warnings():  # local mode says indexes have no effect there; we know
                warnings.filterwarnings("ignore", message="Payload indexes have no effect")
                await client.create_payload_index(name, field, field_schema=_index_schema(kind), wait=True)

    async def _ensure_hybrid_vectors(self, client: AsyncQdrantClient, name: str, dense: Any, sparse: Any) -> None:
        has_context = isinstance(dense, dict) and CONTEXT in dense
        if has_context and LEXICAL in sparse:
            return
        if not self._migrate:
            raise StoreSchemaError(
                f"collection {name} was written by an older memstream (no hybrid-search vectors): run "
                "`memstream store reindex` once"
            )
        if not has_context:
            await client.create_vector_name(
                name,
                CONTEXT,
                models.DenseVectorNameConfig(
                    dense=models.DenseVectorConfig(size=self.config.dim, distance=models.Distance.DOT)
                ),
            )
        if LEXICAL not in sparse:
            await client.create_vector_name(
                name,
                LEXICAL,
                models.SparseVectorNameConfig(sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)),
            )

    async def open(self) -> None:
        if self._open:
            return
        if self._client is None:
            self._client = self._make_client()
        try:
            for collection in Collection:
                await self._ensure_collection(self._client, collection)
        except BaseException:
            if self._owns_client:
                await self._client.close()
                self._client = None
            raise
        self._open = True

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._owns_client and self._client is not None:
            await self._client.close()
            self._client = None

    # -- primitives -------------------------------------------------------------------------------------

    async def _upsert(
        self,
        collection: Collection,
        ids: list[str],
        vectors: np.ndarray,
        payloads: list[dict[str, Any]],
        named: list[NamedVectors] | None = None,
    ) -> None:
        if named is None:
            batch = models.Batch(ids=ids, vectors=vectors.tolist(), payloads=payloads)
            await self.client.upsert(self.name(collection), points=batch, wait=True)
            return
        points = [
            models.PointStruct(
                id=i, payload=p, vector={"": row, CONTEXT: n.context.tolist(), LEXICAL: _sparse(n.lexical)}
            )
            for i, row, p, n in zip(ids, vectors.tolist(), payloads, named)
        ]
        await self.client.upsert(self.name(collection), points=points, wait=True)

    async def _hybrid(self, collection: Collection, query: HybridQuery, where: Scope, corpus: Scope) -> list[Found]:
        flt = _filter(where)
        prefetch = [models.Prefetch(query=query.dense, using=CONTEXT, limit=query.candidates, filter=flt)]
        if len(query.lexical):
            prefetch.append(
                models.Prefetch(
                    query=_sparse(query.lexical),
                    using=LEXICAL,
                    limit=query.candidates,
                    filter=flt,
                    params=models.SearchParams(idf=models.IdfCorpusParams(corpus=_filter(corpus))),
                )
            )
        response = await self.client.query_points(
            self.name(collection),
            prefetch=prefetch,
            query=models.FusionQuery(fusion=models.Fusion.DBSF),
            query_filter=flt,
            limit=query.limit,
            with_payload=True,
            with_vectors=False,
        )
        return [(p.payload or {}, None, p.score) for p in response.points]

    async def _scroll_page(self, collection: Collection, offset: Any, limit: int) -> tuple[list[Found], Any]:
        records, next_offset = await self.client.scroll(
            self.name(collection), offset=offset, limit=limit, with_payload=True, with_vectors=True
        )
        return [(r.payload or {}, r.vector, None) for r in records], next_offset

    async def _query(
        self, collection: Collection, vector: list[float], where: Scope, limit: int, score_threshold: float | None
    ) -> list[Found]:
        response = await self.client.query_points(
            self.name(collection),
            query=vector,
            query_filter=_filter(where),
            limit=limit,
            with_payload=True,
            with_vectors=False,
            score_threshold=score_threshold,
        )
        return [(p.payload or {}, None, p.score) for p in response.points]

    async def _scroll(
        self, collection: Collection, where: Scope, limit: int, *, with_vectors: bool, oldest_first: bool = False
    ) -> list[Found]:
        records, _next = await self.client.scroll(
            self.name(collection),
            scroll_filter=_filter(where),
            limit=limit,
            with_payload=True,
            with_vectors=with_vectors,
            order_by=models.OrderBy(key="ts", direction=models.Direction.ASC) if oldest_first else None,
        )
        return [(r.payload or {}, r.vector if with_vectors else None, None) for r in records]

    async def _count(self, collection: Collection, where: Scope) -> int:
        result = await self.client.count(self.name(collection), count_filter=_filter(where), exact=True)
        return result.count

    async def _delete(self, collection: Collection, where: Scope) -> int:
        flt = _filter(where)
        if flt is None:
            raise StoreError("refusing an unfiltered delete")
        matched = await self._count(collection, where)
        if matched:
            await self.client.delete(
                self.name(collection), points_selector=models.FilterSelector(filter=flt), wait=True
            )
        return matched
