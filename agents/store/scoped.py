"""The memory store: its behaviour, written once over a few backend primitives (upsert, query, hybrid,
scroll, count, delete), each of which takes a :class:`~agents.store.scope.Scope` and so always carries the
tenant.

:class:`MemoryStore` is the one type the agents, the web views, recall and the CLI use. A backend
(:class:`~agents.store.edge.EdgeStore`, :class:`~agents.store.server.ServerStore`) subclasses it and
implements only what varies: opening and closing, and the abstract primitives, translating scopes and
points to its own client types.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from memstream.agents.store.base import (
    Collection,
    EpisodeHit,
    EpisodePoint,
    ErrorHit,
    ErrorPoint,
    EventHit,
    EventPoint,
    StoreConfig,
    as_matrix,
    as_query,
)
from memstream.agents.store.ids import episode_point_id, error_point_id, event_point_id
from memstream.agents.store.schema import HybridQuery, NamedVectors, from_payload, point_id, to_payload
from memstream.agents.store.scope import AnyOf, HasIds, Match, Range, Scope, require_tenant, scope, time_window
from memstream.models.lexical import LexicalEncoder, SparseVector

__all__ = ["Found", "MemoryStore"]

# (payload, vector or None, score or None) of one point as a backend returns it.
Found = tuple[dict[str, Any], Any, float | None]


class MemoryStore(abc.ABC):
    """Events, episodes and error samples of every tenant; ``async with store:`` opens and closes it.

    Writes are upserts by deterministic point id (:mod:`agents.store.ids`): a replay overwrites.
    ``ts``/``since``/``until`` are event time in seconds since the epoch. Scores are cosine similarity.
    """

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._lexical_encoder: LexicalEncoder | None = None

    @property
    def lexical(self) -> LexicalEncoder:
        """The encoder of event texts and queries into sparse vectors (built on first use)."""
        if self._lexical_encoder is None:
            self._lexical_encoder = LexicalEncoder(self.config.lexical)
        return self._lexical_encoder

    # -- lifecycle (the backend's) ----------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Open (or create) the collections; idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and release the backend; idempotent."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- primitives -------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def _upsert(
        self,
        collection: Collection,
        ids: list[str],
        vectors: np.ndarray,
        payloads: list[dict[str, Any]],
        named: list[NamedVectors] | None = None,
    ) -> None:
        """Write one batch (at most ``config.upsert_batch`` points); events come with their ``named``
        hybrid-search vectors."""

    @abc.abstractmethod
    async def _hybrid(self, collection: Collection, query: HybridQuery, where: Scope, corpus: Scope) -> list[Found]:
        """Dense (CONTEXT) and lexical (LEXICAL) prefetches under ``where``, fused by DBSF in the store; the
        lexical IDF is computed over ``corpus`` only (the tenant: no other tenant's texts weigh in)."""

    @abc.abstractmethod
    async def _scroll_page(self, collection: Collection, offset: Any, limit: int) -> tuple[list[Found], Any]:
        """One page of every point of a collection, all tenants, with all vectors, and the next page's
        offset (None after the last): the reindex's read."""

    @abc.abstractmethod
    async def _query(
        self, collection: Collection, vector: list[float], where: Scope, limit: int, score_threshold: float | None
    ) -> list[Found]:
        """Nearest points by cosine similarity, best first, with payloads and scores."""

    @abc.abstractmethod
    async def _scroll(
        self, collection: Collection, where: Scope, limit: int, *, with_vectors: bool, oldest_first: bool = False
    ) -> list[Found]:
        """Up to ``limit`` points matching ``where`` (by ``ts`` ascending when ``oldest_first``)."""

    @abc.abstractmethod
    async def _count(self, collection: Collection, where: Scope) -> int: ...

    @abc.abstractmethod
    async def _delete(self, collection: Collection, where: Scope) -> int:
        """Delete the points matching ``where``; return how many matched."""

    # -- writes -----------------------------------------------------------------------------------------

    async def _upsert_records(self, collection: Collection, records: Sequence[Any]) -> None:
        step = self.config.upsert_batch
        for start in range(0, len(records), step):
            chunk = records[start : start + step]
            vectors = as_matrix([r.vector for r in chunk], self.config.dim)
            named = self._named_vectors(chunk, vectors) if collection is Collection.EVENTS else None
            await self._upsert(collection, [point_id(r) for r in chunk], vectors, [to_payload(r) for r in chunk], named)

    def _named_vectors(self, events: Sequence[EventPoint], own: np.ndarray) -> list[NamedVectors]:
        """Each event's hybrid-search vectors: those it brings, else its own (unit embedding, text's BM25)."""
        norms = np.linalg.norm(own, axis=1, keepdims=True)
        unit = own / np.where(norms > 0, norms, 1.0)
        given = [e.context_vector for e in events]
        context = unit.copy()
        if any(v is not None for v in given):
            rows = [i for i, v in enumerate(given) if v is not None]
            context[rows] = as_matrix([given[i] for i in rows], self.config.dim)
        return [
            NamedVectors(context[i], e.lexical if e.lexical is not None else self.lexical.document(e.text))
            for i, e in enumerate(events)
        ]

    async def upsert_events(self, points: Sequence[EventPoint]) -> None:
        await self._upsert_records(Collection.EVENTS, points)

    async def add_events(self, points: Sequence[EventPoint]) -> int:
        """Write arriving events, except those already stored as members of a sealed episode: an event seen
        again after its episode's seal was applied (a replay of an earlier stage) carries no episode, and
        rewriting it would drop its episode index and context vectors. The same event id is the same event
        (its text, and its vector: the embedder's output does not depend on its batch), so nothing is lost.
        One read per tenant of the batch. Returns how many were written."""
        by_tenant: dict[str, list[str]] = {}
        for point in points:
            if point.episode_index is None:
                by_tenant.setdefault(require_tenant(point.tenant_id), []).append(point.event_id)
        placed = {
            (tenant_id, e.event_id)
            for tenant_id, ids in by_tenant.items()
            for e in await self.events_by_ids(tenant_id, ids)
            if e.episode_index is not None
        }
        fresh = [p for p in points if (p.tenant_id, p.event_id) not in placed]
        await self.upsert_events(fresh)
        return len(fresh)

    async def upsert_episodes(self, points: Sequence[EpisodePoint]) -> None:
        await self._upsert_records(Collection.EPISODES, points)

    async def apply_episode_context(self, episodes: Sequence[EpisodePoint], beta: float) -> int:
        """Sealed episodes' members get their episode index and their context search vectors (each
        event's own vectors mixed with its neighbours' in the episode, `models.event_context`), recomputed
        from their own embeddings and texts, so applying a seal twice changes nothing.

        One read and one write whatever the number of episodes; members not stored are skipped (they
        are written before their episode, so only a forgotten user's can be missing). Returns how many
        events were rewritten."""
        from memstream.models.event_context import context_vectors

        by_tenant: dict[str, list[EpisodePoint]] = {}
        for episode in episodes:
            by_tenant.setdefault(require_tenant(episode.tenant_id), []).append(episode)
        rewritten: list[EventPoint] = []
        for tenant_id, group in by_tenant.items():
            wanted = [e for episode in group for e in episode.event_ids]
            found = {e.event_id: e for e in await self.events_by_ids(tenant_id, wanted, with_vectors=True)}
            for episode in group:
                members = sorted((found[e] for e in episode.event_ids if e in found), key=lambda e: e.ts)
                if not members:
                    continue
                own = as_matrix([m.vector for m in members], self.config.dim)
                dense, sparse = context_vectors(own, [self.lexical.document(m.text) for m in members], beta)
                rewritten.extend(
                    replace(m, episode_index=episode.episode_index, context_vector=dense[i], lexical=sparse[i])
                    for i, m in enumerate(members)
                )
        await self.upsert_events(rewritten)
        return len(rewritten)

    async def reindex_events(
        self, beta: float, *, page: int = 512, progress: Callable[[str], None] | None = None
    ) -> dict[str, int]:
        """Rewrite every event's hybrid-search vectors from its text, embedding and sealed episode: what an
        older store needs once (opened with ``migrate=True``), and what a change of lexical settings or of
        ``beta`` needs. Points are rewritten in place (same ids, payloads, embeddings); none is removed.

        Returns counts: events before and after, episodes whose members got context vectors."""
        say = progress or (lambda _message: None)
        before = await self._count(Collection.EVENTS, Scope.all_tenants())
        done, offset = 0, None
        while True:
            found, offset = await self._scroll_page(Collection.EVENTS, offset, page)
            events = [from_payload(Collection.EVENTS, p, v) for p, v, _ in found]
            await self.upsert_events(events)  # type: ignore[arg-type]
            done += len(events)
            say(f"events: {done}/{before} rewritten with their own lexical vectors")
            if offset is None:
                break
        episodes_done, offset = 0, None
        while True:
            found, offset = await self._scroll_page(Collection.EPISODES, offset, page)
            sealed = [
                e for e in (from_payload(Collection.EPISODES, p, None) for p, _, _ in found) if e.state == "sealed"
            ]  # type: ignore[union-attr]
            await self.apply_episode_context(sealed, beta)  # type: ignore[arg-type]
            episodes_done += len(sealed)
            say(f"episodes: {episodes_done} sealed episodes' members got context vectors")
            if offset is None:
                break
        after = await self._count(Collection.EVENTS, Scope.all_tenants())
        return {"events_before": before, "events_after": after, "events_rewritten": done, "episodes": episodes_done}

    async def upsert_errors(self, points: Sequence[ErrorPoint]) -> None:
        await self._upsert_records(Collection.ERRORS, points)

    # -- reads ------------------------------------------------------------------------------------------

    async def search_events(
        self,
        vector: ArrayLike,
        *,
        tenant_id: str,
        user_id: str | None = None,
        session_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 10,
    ) -> list[EventHit]:
        """Events by cosine similarity of their own embedding, best first."""
        where = scope(tenant_id, user_id=user_id, session_id=session_id, must=time_window(since, until))
        found = await self._query(Collection.EVENTS, as_query(vector, self.config.dim), where, limit, None)
        return [EventHit(from_payload(Collection.EVENTS, p, v), s) for p, v, s in found]  # type: ignore[arg-type]

    async def hybrid_events(
        self,
        vector: ArrayLike,
        lexical: SparseVector,
        *,
        tenant_id: str,
        user_id: str | None = None,
        session_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 10,
        candidates: int = 400,
    ) -> list[EventHit]:
        """Events by dense and lexical similarity of their context vectors, fused inside the store: the
        best ``candidates`` of each, distribution-based score fusion (each list's scores scaled by its
        mean ± 3 std, then summed), best ``limit`` first. Filters apply to both lists."""
        if limit < 1 or candidates < 1:
            raise ValueError("limit and candidates must be >= 1")
        where = scope(tenant_id, user_id=user_id, session_id=session_id, must=time_window(since, until))
        query = HybridQuery(as_query(vector, self.config.dim), lexical, limit, max(candidates, limit))
        found = await self._hybrid(Collection.EVENTS, query, where, scope(tenant_id))
        return [EventHit(from_payload(Collection.EVENTS, p, v), s) for p, v, s in found]  # type: ignore[arg-type]

    async def search_episodes(
        self,
        vector: ArrayLike,
        *,
        tenant_id: str,
        user_id: str | None = None,
        session_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 5,
    ) -> list[EpisodeHit]:
        """Episodes overlapping [since, until] (``end_ts >= since``, ``start_ts <= until``), best first."""
        window = time_window(since, until, start_key="start_ts", end_key="end_ts")
        where = scope(tenant_id, user_id=user_id, session_id=session_id, must=window)
        found = await self._query(Collection.EPISODES, as_query(vector, self.config.dim), where, limit, None)
        return [EpisodeHit(from_payload(Collection.EPISODES, p, v), s) for p, v, s in found]  # type: ignore[arg-type]

    async def episodes_by_index(
        self, tenant_id: str, session_id: str, indices: Sequence[int], *, with_vectors: bool = False
    ) -> list[EpisodePoint]:
        """The session's episodes with these indices that exist, ordered by index."""
        require_tenant(tenant_id)
        wanted = tuple(sorted({int(i) for i in indices}))
        if not wanted:
            return []
        where = scope(tenant_id, session_id=session_id, must=[AnyOf("episode_index", wanted)])
        found = await self._scroll(Collection.EPISODES, where, len(wanted), with_vectors=with_vectors)
        episodes = [from_payload(Collection.EPISODES, p, v) for p, v, _ in found]
        return sorted(episodes, key=lambda e: e.episode_index)  # type: ignore[union-attr,return-value]

    async def episodes_by_keys(
        self,
        tenant_id: str,
        keys: Sequence[tuple[str, int]],
        *,
        user_id: str | None = None,
        with_vectors: bool = False,
    ) -> list[EpisodePoint]:
        """Episodes by (session_id, episode_index), across sessions, in one store call; those that exist
        (and are ``user_id``'s, when given), ordered by (session_id, episode_index)."""
        require_tenant(tenant_id)
        wanted = list(dict.fromkeys((str(s), int(i)) for s, i in keys))
        if not wanted:
            return []
        ids = HasIds(tuple(episode_point_id(tenant_id, s, i) for s, i in wanted))
        where = scope(tenant_id, user_id=user_id, must=[ids])
        found = await self._scroll(Collection.EPISODES, where, len(wanted), with_vectors=with_vectors)
        episodes = [from_payload(Collection.EPISODES, p, v) for p, v, _ in found]
        return sorted(episodes, key=lambda e: (e.session_id, e.episode_index))  # type: ignore[union-attr,return-value]

    async def events_by_ids(
        self, tenant_id: str, event_ids: Sequence[str], *, user_id: str | None = None, with_vectors: bool = False
    ) -> list[EventPoint]:
        """The tenant's events with these ids that exist (and are ``user_id``'s, when given), in the order
        asked."""
        require_tenant(tenant_id)
        wanted = list(dict.fromkeys(event_ids))
        if not wanted:
            return []
        where = scope(tenant_id, user_id=user_id, must=[HasIds(tuple(event_point_id(tenant_id, e) for e in wanted))])
        found = await self._scroll(Collection.EVENTS, where, len(wanted), with_vectors=with_vectors)
        by_id = {p["event_id"]: from_payload(Collection.EVENTS, p, v) for p, v, _ in found}
        return [by_id[e] for e in wanted if e in by_id]  # type: ignore[misc]

    async def search_errors(
        self,
        vector: ArrayLike,
        *,
        tenant_id: str,
        model_version: str | None,
        user_id: str | None = None,
        limit: int = 32,
        score_threshold: float | None = None,
    ) -> list[ErrorHit]:
        """Nearest error samples; ``model_version=None`` means any version (explicitly)."""
        must = [Match("model_version", model_version)] if model_version is not None else []
        where = scope(tenant_id, user_id=user_id, must=must)
        found = await self._query(Collection.ERRORS, as_query(vector, self.config.dim), where, limit, score_threshold)
        return [ErrorHit(from_payload(Collection.ERRORS, p, v), s) for p, v, s in found]  # type: ignore[arg-type]

    async def scroll_errors(
        self,
        tenant_id: str,
        *,
        event_ids: Sequence[str] | None = None,
        limit: int = 10_000,
        with_vectors: bool = False,
    ) -> list[ErrorPoint]:
        """Up to ``limit`` of the tenant's error samples (those with these event ids, when given), oldest
        first: what rebuilds an in-worker error memory, or tells which samples are already stored."""
        require_tenant(tenant_id)
        must: list[Any] = []
        if event_ids is not None:
            wanted = tuple(dict.fromkeys(event_ids))
            if not wanted:
                return []
            must.append(HasIds(tuple(error_point_id(tenant_id, e) for e in wanted)))
            limit = min(limit, len(wanted))
        where = scope(tenant_id, must=must)
        found = await self._scroll(Collection.ERRORS, where, limit, with_vectors=with_vectors, oldest_first=True)
        return [from_payload(Collection.ERRORS, p, v) for p, v, _ in found]  # type: ignore[misc]

    # -- deletes and counts -----------------------------------------------------------------------------

    async def delete_errors(
        self,
        tenant_id: str,
        *,
        event_ids: Sequence[str] | None = None,
        user_id: str | None = None,
        model_version: str | None = None,
        except_model_version: str | None = None,
        before: float | None = None,
    ) -> int:
        """Delete the tenant's error samples matching all the criteria given (none given: all of them).

        ``except_model_version`` is the reset on a new model; ``before`` (ts < before) the ttl expiry.
        Returns how many were deleted.
        """
        require_tenant(tenant_id)
        must: list[Any] = []
        if event_ids is not None:
            if not event_ids:
                return 0
            must.append(HasIds(tuple(error_point_id(tenant_id, e) for e in dict.fromkeys(event_ids))))
        if model_version is not None:
            must.append(Match("model_version", model_version))
        if before is not None:
            must.append(Range("ts", lt=float(before)))
        must_not = [Match("model_version", except_model_version)] if except_model_version is not None else []
        where = scope(tenant_id, user_id=user_id, must=must, must_not=must_not)
        return await self._delete(Collection.ERRORS, where)

    async def trim_errors(self, tenant_id: str, capacity: int) -> int:
        """Keep the tenant's ``capacity`` newest error samples (by ts), delete the rest; return how many."""
        require_tenant(tenant_id)
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        where = scope(tenant_id)
        excess = await self._count(Collection.ERRORS, where) - capacity
        if excess <= 0:
            return 0
        oldest = await self._scroll(Collection.ERRORS, where, excess, with_vectors=False, oldest_first=True)
        return await self.delete_errors(tenant_id, event_ids=[p["event_id"] for p, _, _ in oldest])

    async def forget(self, tenant_id: str, user_id: str) -> int:
        """Delete every point of this user from all collections; return how many there were."""
        if user_id is None:
            raise ValueError("user_id is required")
        where = scope(tenant_id, user_id=user_id)
        removed = 0
        for collection in Collection:
            removed += await self._delete(collection, where)
        return removed

    async def count(self, collection: Collection | str, tenant_id: str | None = None) -> int:
        """Points in a collection, of one tenant or (None) of all."""
        where = Scope.all_tenants() if tenant_id is None else scope(tenant_id)
        return await self._count(Collection(collection), where)
