"""The forgotten users of a deployment, as every stage sees them (the ``forgotten`` topic, see
``streams/forgetting.py``): a stage asks ``covers(tenant, user, ts)`` before it applies a record, and drops
the ones covered — counted in ``memstream_forgotten_dropped``, logged without content."""

from __future__ import annotations

import asyncio
import logging
import math

from memstream.streams.forgetting import ForgetRecord

__all__ = ["ForgottenUsers"]

log = logging.getLogger(__name__)


class ForgottenUsers:
    def __init__(self) -> None:
        self._at: dict[tuple[str, str], float] = {}
        self.ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._at)

    def apply_record(self, record: ForgetRecord) -> None:
        key = (record.tenant_id, record.user_id)
        self._at[key] = max(self._at.get(key, record.forgotten_at), record.forgotten_at)

    def apply(self, key: str, value: bytes | None) -> None:
        """One record of the topic (a tombstone lifts the forget: an operator's undo). A record whose value
        cannot be read fails closed: its key still names the user, who is then forgotten for good (past and
        future: later forgets cannot shrink it) until an operator's tombstone lifts it, rather than
        remembered by mistake. A
        record whose key names no user either raises ValueError (logged and skipped by the topic reader)."""
        tenant, _, user = key.partition("/")
        if value is None:
            self._at.pop((tenant, user), None)
            return
        try:
            record = ForgetRecord.model_validate_json(value)
        except ValueError as exc:
            if not tenant or not user:
                raise
            log.error(
                "unreadable forget record for a user of tenant %s (%s): that user is treated as forgotten for "
                "good until a tombstone lifts it",
                tenant,
                type(exc).__name__,
            )
            self._at[(tenant, user)] = math.inf
            return
        if record.key != key:
            log.warning("forget record under key %r names %s; applied to the user it names", key, record.key)
        self.apply_record(record)

    def covers(self, tenant_id: str, user_id: str | None, ts: float) -> bool:
        """Whether a record of this user dated ``ts`` belongs to a forgotten past."""
        if user_id is None:
            return False
        at = self._at.get((tenant_id, user_id))
        return at is not None and ts <= at
