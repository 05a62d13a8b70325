"""The worker's API keys: an in-memory copy of the ``access`` topic, followed as it changes.

Each worker reads the topic from the beginning (no consumer group: every worker needs every key) and then
follows it, so a key created or revoked with ``memstream keys`` takes effect on every worker within about a
second (the consumer's poll interval plus the broker's delivery; see README "Threat model"). Until the
worker has read to the end offset it found at start, it is not ``ready`` and the API answers 503.
"""

from __future__ import annotations

import logging
import time

from memstream.agents.auth.errors import NotAuthenticated
from memstream.agents.auth.principal import Principal
from memstream.agents.control_topic import follow_control_topic
from memstream.streams.access import AccessKey, decode_key, parse_key
from memstream.streams.settings import KafkaSettings

__all__ = ["KeyRing", "follow_access_topic"]

log = logging.getLogger(__name__)

_BAD_KEY = "invalid API key"  # one message for unknown, revoked and wrong-secret keys: nothing to probe


class KeyRing:
    """Key records by key id; ``authenticate`` turns a presented key into a Principal or refuses it."""

    def __init__(self) -> None:
        self._keys: dict[str, AccessKey] = {}
        self.ready = False
        self.created = time.monotonic()

    def __len__(self) -> int:
        return len(self._keys)

    def apply(self, key_id: str, record: AccessKey | None) -> None:
        """One record of the topic: a key's latest state, or None (a tombstone) to drop it."""
        if record is None:
            self._keys.pop(key_id, None)
        else:
            self._keys[key_id] = record

    def authenticate(self, token: str) -> Principal:
        parsed = parse_key(token)
        if parsed is None:
            raise NotAuthenticated(_BAD_KEY)
        key_id, secret = parsed
        record = self._keys.get(key_id)
        if record is None or not record.matches(secret) or not record.active:
            raise NotAuthenticated(_BAD_KEY)
        return Principal(record.tenant_id, record.user_id, frozenset(record.scopes), f"key:{record.key_id}")


async def follow_access_topic(keyring: KeyRing, kafka: KafkaSettings) -> None:
    """Feed ``keyring`` from the ``access`` topic forever."""

    def apply(key_id: str, value: bytes | None) -> None:
        try:
            keyring.apply(key_id, decode_key(value))
        except ValueError:  # fail closed: a record this worker cannot read disables that key
            keyring.apply(key_id, None)
            raise

    def ready() -> None:
        keyring.ready = True
        log.info("API keys loaded: %d keys from %s", len(keyring), kafka.topics.access)

    await follow_control_topic(kafka, kafka.topics.access, apply, ready)
