"""Wire contracts: the records publishers send and subscribers receive, validated on the way in.

Every record carries ``schema_version``; a reader rejects versions it does not know rather than guess.
JSON Schema files generated from these models live in ``streams/schemas/`` so any language can publish.
"""

from __future__ import annotations

import math
import uuid
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

SCHEMA_VERSION: Final = 1
DEFAULT_MAX_TEXT_CHARS = 16_384
MAX_ATTRIBUTES_BYTES = 8_192
MAX_VECTOR_DIM = 4_096
MAX_DEAD_LETTER_RAW = 256 * 1024
"""A dead letter keeps at most this many bytes of the rejected value (plus its size and hash), so it always
fits under the broker's message size limit."""

Ident = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$")]
"""Tenant, user, session, item and event ids: short, printable, no separators we use in keys ('/')."""

Scalar = str | int | float | bool | None
Role = Literal["user", "assistant", "system", "tool"]

# Namespace for deterministic ids (point ids, update ids): stable across versions, never change it.
MEMSTREAM_NS = uuid.UUID("6b3c6f3e-5d0e-4f7a-9b1e-3a2f0c7d9e11")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, ser_json_inf_nan="strings")


def _check_text(value: str, info: ValidationInfo) -> str:
    limit = (info.context or {}).get("max_text_chars", DEFAULT_MAX_TEXT_CHARS)
    if len(value) > limit:
        raise ValueError(f"text has {len(value)} characters, more than the limit of {limit}")
    return value


def _check_attributes(value: dict[str, Scalar]) -> dict[str, Scalar]:
    for key, item in value.items():
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"attribute {key!r} is not a finite number")
    size = sum(len(k) + len(str(v)) for k, v in value.items())
    if size > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"attributes take {size} bytes, more than {MAX_ATTRIBUTES_BYTES}")
    return value


class InteractionEvent(_Record):
    """One message or action in a session: what agents and recommenders publish to `interactions`."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Ident = Field(description="Idempotency key: a replayed event overwrites, never duplicates.")
    tenant_id: Ident
    user_id: Ident
    session_id: Ident
    ts: float = Field(ge=0, allow_inf_nan=False, description="Event time, seconds since the Unix epoch.")
    role: Role = "user"
    kind: Annotated[str, Field(min_length=1, max_length=64)] = "message"
    text: str = Field(description="The content that is embedded; may be empty (then it is not recalled by text).")
    attributes: dict[Annotated[str, Field(max_length=128)], Scalar] = Field(default_factory=dict)

    _text = field_validator("text")(_check_text)
    _attrs = field_validator("attributes")(_check_attributes)

    @property
    def key(self) -> bytes:
        """Kafka key: tenant and session, so a session's events stay in order on one partition."""
        return f"{self.tenant_id}/{self.session_id}".encode()


class Features(_Record):
    """What the model saw: text (embedded by memstream), a numeric vector, or both."""

    text: str | None = None
    vector: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(default=None, max_length=MAX_VECTOR_DIM)

    _text = field_validator("text")(lambda v, info: v if v is None else _check_text(v, info))

    @model_validator(mode="after")
    def _one_of(self) -> Features:
        if (self.text is None or not self.text.strip()) and not self.vector:
            raise ValueError("features need a non-empty text or a non-empty vector")
        return self


class FeedbackEvent(_Record):
    """An observed outcome of a model's prediction: the raw material of error memory (ReLoop2)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Ident
    tenant_id: Ident
    user_id: Ident
    item_id: Ident
    features: Features
    prediction: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    label: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    model_version: Annotated[str, Field(min_length=1, max_length=64)]
    ts: float = Field(ge=0, allow_inf_nan=False)

    @property
    def key(self) -> bytes:
        return f"{self.tenant_id}/{self.user_id}".encode()


class UpdateKind(StrEnum):
    """What a :class:`MemoryUpdate` announces: the one list of update kinds. Members are ``str`` (``==``
    a plain string, the string itself on the wire), so subscribers may compare with either."""

    EVENT_RECEIVED = "event_received"
    EVENT_INDEXED = "event_indexed"
    EPISODE_OPENED = "episode_opened"
    EPISODE_SEALED = "episode_sealed"
    ERROR_STORED = "error_stored"
    ERRORS_EVICTED = "errors_evicted"
    ERRORS_RESET = "errors_reset"
    FORGOTTEN = "forgotten"


EpisodeKind = Literal["opened", "sealed"]

EPISODE_UPDATES: Final[dict[EpisodeKind, UpdateKind]] = {
    "opened": UpdateKind.EPISODE_OPENED,
    "sealed": UpdateKind.EPISODE_SEALED,
}
"""The update announcing an :class:`EpisodeRecord` of each kind."""

_WireUpdateKind = Annotated[
    UpdateKind,
    # Records are strict, and a strict enum field takes only enum members: a decoded record has the string.
    Field(strict=False),
    # The schema lists the values inline, as the wire has them.
    WithJsonSchema({"enum": [kind.value for kind in UpdateKind], "title": "Kind", "type": "string"}),
]


class MemoryUpdate(_Record):
    """An announcement on `memory-updates`: something in memory changed.

    ``update_id`` is deterministic (uuid5 of kind and ids), so a subscriber that sees an update twice
    (at-least-once delivery) de-duplicates by it.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    update_id: str
    kind: _WireUpdateKind
    tenant_id: Ident
    user_id: Ident | None = None
    session_id: Ident | None = None
    ids: list[str] = Field(default_factory=list)
    ts: float = Field(allow_inf_nan=False)
    payload: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def make(
        cls, kind: UpdateKind, tenant_id: str, ids: list[str], ts: float, *, salt: str = "", **fields: Any
    ) -> MemoryUpdate:
        """Build an update whose id is derived from what it announces (and `salt`, for announcements that
        may rightly repeat, such as a second forget of the same user)."""
        update_id = str(uuid.uuid5(MEMSTREAM_NS, "|".join([kind, tenant_id, *ids, salt])))
        return cls(update_id=update_id, kind=kind, tenant_id=tenant_id, ids=ids, ts=ts, **fields)


class EpisodeRecord(_Record):
    """Internal (`episodes` topic): the segmenter opened or sealed an episode; the centroid travels as
    float32 bytes in the frame (see codec.encode_with_vector), empty for an opened episode."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: EpisodeKind
    tenant_id: Ident
    user_id: Ident
    session_id: Ident
    episode_index: int = Field(ge=0)
    event_ids: list[str]
    start_ts: float
    end_ts: float

    @property
    def key(self) -> bytes:
        return f"{self.tenant_id}/{self.session_id}".encode()


CONTROL_KINDS = frozenset({"session_end", "session_idle"})
"""Interaction kinds that steer segmentation (close the session's open episode) and are not indexed."""


class DeadLetter(_Record):
    """A record that could not be processed, with why and where it came from. Nothing is dropped silently."""

    schema_version: Literal[1] = SCHEMA_VERSION
    reason: str
    stage: str
    source_topic: str
    partition: int
    offset: int
    key: str | None = None
    raw_b64: str = Field(description="The record's value as received, base64 (its first MAX_DEAD_LETTER_RAW bytes).")
    raw_size: int = Field(0, ge=0, description="Size of the received value in bytes.")
    raw_sha256: str = Field("", description="SHA-256 of the whole received value, hex.")
    raw_truncated: bool = Field(False, description="True when raw_b64 holds only a prefix of the value.")
    ts: float
