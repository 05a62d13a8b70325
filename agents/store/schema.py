"""How records map to points: payload layout, point ids and payload indexes of each collection.

Shared by both backends so that they store byte-for-byte the same payloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from memstream.agents.store.base import Collection, EpisodePoint, ErrorPoint, EventPoint
from memstream.agents.store.ids import episode_point_id, error_point_id, event_point_id
from memstream.models.lexical import SparseVector

__all__ = [
    "CONTEXT",
    "INDEXES",
    "LEXICAL",
    "HybridQuery",
    "IndexKind",
    "NamedVectors",
    "from_payload",
    "point_id",
    "to_payload",
]

# Events carry three vectors: "" (their own embedding, cosine), CONTEXT (dense search vector, dot product:
# own embedding mixed with the episode's neighbours) and LEXICAL (sparse BM25 weights, IDF applied by the
# store). Episodes and error samples have the unnamed dense vector only.
CONTEXT = "context"
LEXICAL = "lexical"


@dataclass(frozen=True, slots=True)
class NamedVectors:
    """An event's hybrid-search vectors, as the backends write them beside its own embedding."""

    context: np.ndarray
    lexical: SparseVector


@dataclass(frozen=True, slots=True)
class HybridQuery:
    """Dense and lexical query vectors; the best ``candidates`` of each are fused, ``limit`` returned."""

    dense: list[float]
    lexical: SparseVector
    limit: int
    candidates: int


IndexKind = Literal["tenant", "keyword", "float", "integer"]

# tenant_id is the tenant key (Qdrant co-locates a tenant's points); the others make filters cheap.
INDEXES: dict[Collection, dict[str, IndexKind]] = {
    Collection.EVENTS: {
        "tenant_id": "tenant",
        "user_id": "keyword",
        "session_id": "keyword",
        "ts": "float",
        "episode_index": "integer",
    },
    Collection.EPISODES: {
        "tenant_id": "tenant",
        "user_id": "keyword",
        "session_id": "keyword",
        "episode_index": "integer",
        "start_ts": "float",
        "end_ts": "float",
    },
    Collection.ERRORS: {
        "tenant_id": "tenant",
        "user_id": "keyword",
        "model_version": "keyword",
        "ts": "float",
    },
}

Record = EventPoint | EpisodePoint | ErrorPoint


def point_id(record: Record) -> str:
    if isinstance(record, EventPoint):
        return event_point_id(record.tenant_id, record.event_id)
    if isinstance(record, EpisodePoint):
        return episode_point_id(record.tenant_id, record.session_id, record.episode_index)
    return error_point_id(record.tenant_id, record.event_id)


def to_payload(record: Record) -> dict[str, Any]:
    if isinstance(record, EventPoint):
        index = None if record.episode_index is None else int(record.episode_index)
        return record.event_fields() | {"episode_index": index}
    if isinstance(record, EpisodePoint):
        return {
            "tenant_id": record.tenant_id,
            "user_id": record.user_id,
            "session_id": record.session_id,
            "episode_index": int(record.episode_index),
            "start_ts": float(record.start_ts),
            "end_ts": float(record.end_ts),
            "event_ids": list(record.event_ids),
            "state": record.state,
        }
    return {
        "tenant_id": record.tenant_id,
        "user_id": record.user_id,
        "item_id": record.item_id,
        "event_id": record.event_id,
        "model_version": record.model_version,
        "label": float(record.label),
        "prediction": float(record.prediction),
        "ts": float(record.ts),
    }


def _vector(raw: Any) -> np.ndarray | None:
    if raw is None:
        return None
    if isinstance(raw, Mapping):  # named vectors: ours is the unnamed default one
        raw = raw.get("", None)
        if raw is None:
            return None
    return np.asarray(raw, dtype=np.float32)


def from_payload(collection: Collection, payload: Mapping[str, Any], vector: Any = None) -> Record:
    p = payload
    if collection is Collection.EVENTS:
        index = p.get("episode_index")
        return EventPoint.from_fields(p, vector=_vector(vector), episode_index=None if index is None else int(index))
    if collection is Collection.EPISODES:
        return EpisodePoint(
            tenant_id=p["tenant_id"],
            user_id=p["user_id"],
            session_id=p["session_id"],
            episode_index=int(p["episode_index"]),
            start_ts=float(p["start_ts"]),
            end_ts=float(p["end_ts"]),
            event_ids=tuple(p.get("event_ids") or ()),
            vector=_vector(vector),
            state=p.get("state", "opened"),
        )
    return ErrorPoint(
        tenant_id=p["tenant_id"],
        user_id=p["user_id"],
        item_id=p["item_id"],
        event_id=p["event_id"],
        model_version=p["model_version"],
        label=float(p["label"]),
        prediction=float(p["prediction"]),
        ts=float(p["ts"]),
        vector=_vector(vector),
    )
