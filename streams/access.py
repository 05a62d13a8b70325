"""API keys on the wire: what a key may do (scopes), how it is written and checked, and the compacted
``access`` topic that holds the keys of a deployment.

A key is shown once, at creation: ``msk_<key id>_<secret>``. The topic holds only its record
(:class:`AccessKey`: tenant, optional user, scopes, the secret's SHA-256, revocation time), keyed by key id;
compaction keeps the latest record of each key. Secrets are 256 random bits, so a plain SHA-256 is enough
to store them (a slow password hash guards low-entropy secrets, which these are not); the check compares
digests in constant time. Workers read the topic from the beginning and follow it (``agents/auth``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from memstream.streams.contracts import Ident
from memstream.streams.control import publish_control, read_control
from memstream.streams.settings import KafkaSettings

__all__ = [
    "KEY_PREFIX",
    "AccessKey",
    "Scope",
    "digest",
    "new_key",
    "parse_key",
    "publish_key",
    "read_keys",
]

KEY_PREFIX = "msk_"
_KEY = re.compile(r"^msk_([0-9a-f]{16})_([A-Za-z0-9_\-]{32,128})$")


class Scope(StrEnum):
    """What a credential may do. ``read``: recall, get, compensate, subscribe to updates; ``write``: publish
    events; ``forget``: erase a user's memory; ``admin``: all of these for any tenant."""

    READ = "read"
    WRITE = "write"
    FORGET = "forget"
    ADMIN = "admin"


class AccessKey(BaseModel):
    """One API key's record (never its secret)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    tenant_id: Ident
    user_id: Ident | None = Field(None, description="Set: the key acts for this user only")
    scopes: tuple[Scope, ...] = Field(min_length=1)
    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: str = Field("", max_length=200)
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def matches(self, secret: str) -> bool:
        """Whether ``secret`` is this key's secret (constant-time in the secret)."""
        return hmac.compare_digest(digest(secret), self.secret_sha256)

    def revoked(self, at: float | None = None) -> AccessKey:
        return self.model_copy(update={"revoked_at": time.time() if at is None else at})


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(
    tenant_id: str, scopes: Iterable[Scope | str], *, user_id: str | None = None, label: str = ""
) -> tuple[str, AccessKey]:
    """A new key: the token to hand to its holder (shown once) and the record to store."""
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    record = AccessKey(
        key_id=key_id,
        tenant_id=tenant_id,
        user_id=user_id,
        scopes=tuple(sorted({Scope(s) for s in scopes})),
        secret_sha256=digest(secret),
        label=label,
        created_at=time.time(),
    )
    return f"{KEY_PREFIX}{key_id}_{secret}", record


def parse_key(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed key, None for anything else."""
    match = _KEY.match(token)
    return (match.group(1), match.group(2)) if match else None


async def publish_key(kafka: KafkaSettings, record: AccessKey) -> None:
    """Write a key's record (new or revoked) to the ``access`` topic and wait for the broker's ack."""
    await publish_control(kafka, kafka.topics.access, record.key_id, record.model_dump_json().encode())


def decode_key(value: bytes | None) -> AccessKey | None:
    """A record of the ``access`` topic (None for a tombstone)."""
    return None if value is None else AccessKey.model_validate_json(value)


async def read_keys(kafka: KafkaSettings, timeout_s: float = 30.0) -> dict[str, AccessKey]:
    """Every key's latest record on the ``access`` topic, read to its current end."""
    records = await read_control(kafka, kafka.topics.access, timeout_s)
    return {key_id: AccessKey.model_validate_json(value) for key_id, value in records.items()}
