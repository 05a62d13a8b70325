"""The memory store: events, episodes and error samples in Qdrant, behind one class (:class:`MemoryStore`).

``make_store(config)`` gives the configured backend (embedded qdrant-edge by default, or a Qdrant
server); ``recall()`` is the two-stage episodic recall on top of either.
"""

from __future__ import annotations

from pathlib import Path

from memstream.agents.store.base import (
    EVENT_FIELDS,
    Collection,
    EpisodeHit,
    EpisodePoint,
    ErrorHit,
    ErrorPoint,
    EventHit,
    EventPoint,
    StoreClosedError,
    StoreConfig,
    StoreError,
    StoreLockedError,
    StoreSchemaError,
)
from memstream.agents.store.edge import EdgeStore
from memstream.agents.store.ids import episode_point_id, error_point_id, event_point_id
from memstream.agents.store.recall import RecalledEpisode, RecalledEvent, recall, recall_events
from memstream.agents.store.scoped import MemoryStore
from memstream.agents.store.server import ServerStore

__all__ = [
    "EVENT_FIELDS",
    "Collection",
    "EdgeStore",
    "EpisodeHit",
    "EpisodePoint",
    "ErrorHit",
    "ErrorPoint",
    "EventHit",
    "EventPoint",
    "MemoryStore",
    "RecalledEpisode",
    "RecalledEvent",
    "ServerStore",
    "StoreClosedError",
    "StoreConfig",
    "StoreError",
    "StoreLockedError",
    "StoreSchemaError",
    "episode_point_id",
    "error_point_id",
    "event_point_id",
    "make_store",
    "recall",
    "recall_events",
]


def make_store(config: StoreConfig, *, state_dir: Path | str = Path("var/state"), migrate: bool = False) -> MemoryStore:
    """The configured backend, not yet opened: ``async with make_store(cfg) as store: …``.

    ``migrate`` lets an older store gain the vectors this version needs (`memstream store reindex`);
    without it such a store refuses to open with :class:`StoreSchemaError`."""
    if config.backend == "server":
        return ServerStore(config, migrate=migrate)
    return EdgeStore(config, state_dir=state_dir, migrate=migrate)
