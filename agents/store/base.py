"""The memory store's vocabulary: its settings, the records it keeps, its errors. The store itself (one class,
two backends under it) is :class:`~agents.store.scoped.MemoryStore`.

Three collections, one record type each: ``events`` (one embedded interaction), ``episodes`` (a run of
events with its centroid) and ``errors`` (ReLoop2 feedback samples). Every read, count and delete takes a
``tenant_id`` with no default, and the backends turn it into a filter *inside* the store query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from memstream.models.lexical import LexicalConfig, SparseVector
from memstream.streams.contracts import InteractionEvent

__all__ = [
    "EVENT_FIELDS",
    "Collection",
    "EpisodeHit",
    "EpisodePoint",
    "EpisodeState",
    "ErrorHit",
    "ErrorPoint",
    "EventHit",
    "EventPoint",
    "StoreClosedError",
    "StoreConfig",
    "StoreError",
    "StoreLockedError",
    "StoreSchemaError",
]

EpisodeState = Literal["opened", "sealed"]


class Collection(StrEnum):
    EVENTS = "events"
    EPISODES = "episodes"
    ERRORS = "errors"


class StoreConfig(BaseModel):
    """Where memory lives (nested in the app settings: ``MEMSTREAM_STORE__BACKEND=server`` …)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["edge", "server"] = Field(
        "edge",
        description="edge: embedded qdrant-edge shards on local disk (one process owns them); "
        "server: a Qdrant server every worker writes to.",
    )
    path: Path | None = Field(
        None, description="Edge: directory of the shards (default <worker.state_dir>/qdrant-edge)."
    )
    url: str | None = Field(
        None, description="Server: e.g. http://qdrant:6333 (':memory:' = qdrant-client local mode)."
    )
    api_key: SecretStr | None = None
    prefer_grpc: bool = False
    timeout_s: float = Field(10.0, gt=0)
    collection_prefix: str = Field("memstream_", description="Server: prefix of the collection names.")
    dim: int = Field(384, ge=1, le=4096, description="Vector dimension of all three collections.")
    upsert_batch: int = Field(
        128, ge=1, le=4096, description="Points per write; an edge write holds the GIL for its whole batch."
    )
    lexical: LexicalConfig = Field(
        default_factory=LexicalConfig, description="How event texts become the sparse (BM25) vectors of hybrid search."
    )
    edge_search_threads: int | None = Field(
        None, ge=1, description="Edge: threads of the shard's search pool (None = one per CPU)."
    )

    def edge_path(self, state_dir: Path | str = Path("var/state")) -> Path:
        return self.path if self.path is not None else Path(state_dir) / "qdrant-edge"


class StoreError(RuntimeError):
    """The store could not do what was asked (bad schema, backend failure)."""


class StoreLockedError(StoreError):
    """Another opener (process or object) already holds this edge store's directory."""


class StoreSchemaError(StoreError):
    """The store was written by an older memstream and lacks vectors this one needs: run
    ``memstream store reindex`` (nothing is dropped or rewritten silently)."""


class StoreClosedError(StoreError):
    """The store was used before ``open()`` or after ``close()``."""


Scalar = str | int | float | bool | None


def _vector_field() -> Any:
    # numpy arrays do not compare with ==; records compare on their other fields.
    return field(default=None, compare=False, repr=False)


EVENT_FIELDS: Final = tuple(name for name in InteractionEvent.model_fields if name != "schema_version")
"""An interaction event's own fields (those of the contract, `streams.contracts.InteractionEvent`): what an
:class:`EventPoint` keeps of the event, what its stored payload holds beside ``episode_index``, what
``POST /get/`` answers."""


@dataclass(frozen=True, slots=True)
class EventPoint:
    """One embedded interaction. ``vector`` is required on upsert; reads return it only on request.

    Hybrid search reads two more vectors of an event: ``context_vector`` (dense) and ``lexical`` (sparse
    BM25 weights), its own vectors mixed with its episode neighbours' once the episode is sealed
    (`models.event_context`). Left None on upsert they are the event's own: ``vector`` and the lexical
    vector of ``text``.
    """

    tenant_id: str
    user_id: str
    session_id: str
    event_id: str
    ts: float
    text: str
    vector: ArrayLike | None = _vector_field()
    episode_index: int | None = None
    role: str = "user"
    kind: str = "message"
    attributes: Mapping[str, Scalar] = field(default_factory=dict)
    context_vector: ArrayLike | None = _vector_field()
    lexical: SparseVector | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_event(cls, event: InteractionEvent, vector: ArrayLike | None, **stored: Any) -> EventPoint:
        """The point of an interaction event: its :data:`EVENT_FIELDS`, then its vector and what the store
        adds (``episode_index``, …)."""
        return cls(**{name: getattr(event, name) for name in EVENT_FIELDS}, vector=vector, **stored)

    @classmethod
    def from_fields(cls, values: Mapping[str, Any], **stored: Any) -> EventPoint:
        """The point of event fields as a mapping holds them (a stored payload, a JSON event): the
        :data:`EVENT_FIELDS` it has (other keys are ignored, missing optional ones take their defaults),
        then what the store adds."""
        given = {name: values[name] for name in EVENT_FIELDS if name in values}
        given["ts"] = float(values["ts"])
        given["attributes"] = dict(values.get("attributes") or {})
        return cls(**given, **stored)

    def event_fields(self) -> dict[str, Any]:
        """The interaction event's fields (:data:`EVENT_FIELDS`), JSON-ready: ``ts`` a float, ``attributes``
        a plain dict."""
        values = {name: getattr(self, name) for name in EVENT_FIELDS}
        return values | {"ts": float(self.ts), "attributes": dict(self.attributes)}


@dataclass(frozen=True, slots=True)
class EpisodePoint:
    """A run of a session's events; ``vector`` is their centroid. Provisional while ``opened``."""

    tenant_id: str
    user_id: str
    session_id: str
    episode_index: int
    start_ts: float
    end_ts: float
    event_ids: tuple[str, ...]
    vector: ArrayLike | None = _vector_field()
    state: EpisodeState = "opened"


@dataclass(frozen=True, slots=True)
class ErrorPoint:
    """A ReLoop2 error-memory sample: key vector of the features, the label and the base prediction."""

    tenant_id: str
    user_id: str
    item_id: str
    event_id: str
    model_version: str
    label: float
    prediction: float
    ts: float
    vector: ArrayLike | None = _vector_field()


@dataclass(frozen=True, slots=True)
class EventHit:
    event: EventPoint
    score: float


@dataclass(frozen=True, slots=True)
class EpisodeHit:
    episode: EpisodePoint
    score: float


@dataclass(frozen=True, slots=True)
class ErrorHit:
    error: ErrorPoint
    score: float


def as_matrix(vectors: Sequence[ArrayLike | None], dim: int) -> np.ndarray:
    """Stack vectors into a float32 (n, dim) matrix, refusing missing or misshapen ones."""
    if any(v is None for v in vectors):
        raise ValueError("every point needs a vector to be upserted")
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ValueError(f"vectors have shape {matrix.shape}, expected (n, {dim})")
    if not np.isfinite(matrix).all():
        raise ValueError("vectors contain NaN or infinity")
    return matrix


def as_query(vector: ArrayLike, dim: int) -> list[float]:
    """A query vector as the list of floats both backends take."""
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    if query.shape[0] != dim:
        raise ValueError(f"query vector has {query.shape[0]} dimensions, expected {dim}")
    if not np.isfinite(query).all():
        raise ValueError("query vector contains NaN or infinity")
    return query.tolist()
