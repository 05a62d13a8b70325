"""Deterministic point ids: uuid5 of what identifies a record, so a replayed record overwrites its point.

The name hashed is the JSON array of (kind, tenant, …): unambiguous whatever characters the ids hold,
and the kind keeps an event and an error with the same event_id apart.
"""

from __future__ import annotations

import json
import uuid

from streams.contracts import MEMSTREAM_NS

__all__ = ["episode_point_id", "error_point_id", "event_point_id"]


def _point_id(*parts: str | int) -> str:
    return str(uuid.uuid5(MEMSTREAM_NS, json.dumps(parts, ensure_ascii=False, separators=(",", ":"))))


def event_point_id(tenant_id: str, event_id: str) -> str:
    return _point_id("event", tenant_id, event_id)


def episode_point_id(tenant_id: str, session_id: str, episode_index: int) -> str:
    return _point_id("episode", tenant_id, session_id, int(episode_index))


def error_point_id(tenant_id: str, event_id: str) -> str:
    """Error samples are keyed by the feedback event that carried them."""
    return _point_id("error", tenant_id, event_id)
