"""The forgotten users of a deployment, as every stage sees them (the ``forgotten`` topic, see
``streams/forgetting.py``): a stage asks ``covers(tenant, user, ts)`` before it applies a record, and drops
the ones covered — counted in ``memstream_forgotten_dropped``, logged without content."""

from __future__ import annotations

import asyncio
import logging

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
        """One record of the topic (a tombstone lifts the forget: an operator's undo)."""
        if value is None:
            tenant, _, user = key.partition("/")
            self._at.pop((tenant, user), None)
        else:
            self.apply_record(ForgetRecord.model_validate_json(value))

    def covers(self, tenant_id: str, user_id: str | None, ts: float) -> bool:
        """Whether a record of this user dated ``ts`` belongs to a forgotten past."""
        if user_id is None:
            return False
        at = self._at.get((tenant_id, user_id))
        return at is not None and ts <= at
