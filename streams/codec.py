"""Bytes on the wire: orjson for records, a compact binary frame for records that carry a vector."""

from __future__ import annotations

import base64
import struct
import time
from typing import TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from streams.contracts import DeadLetter, FeedbackEvent, InteractionEvent

R = TypeVar("R", bound=BaseModel)

_FRAME_MAGIC = b"MSV1"
_HEADER = struct.Struct(">4sI")


class InvalidRecord(ValueError):
    """A record that fails decoding or validation; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(record: BaseModel) -> bytes:
    """Serialise a contract record as compact JSON."""
    return orjson.dumps(record.model_dump(mode="json"))


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def decode(raw: bytes | str | None, model: type[R], *, max_text_chars: int | None = None) -> R:
    """Parse and validate one record, raising InvalidRecord with a readable reason."""
    if raw is None or raw == b"" or raw == "":
        raise InvalidRecord("empty record")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRecord(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", 1)
    if version != 1:
        raise InvalidRecord(f"unknown schema_version {version!r} (this reader knows 1)")
    context = {"max_text_chars": max_text_chars} if max_text_chars else None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise InvalidRecord(_reason(exc)) from None


def decode_interaction(raw: bytes | None, *, max_text_chars: int | None = None) -> InteractionEvent:
    return decode(raw, InteractionEvent, max_text_chars=max_text_chars)


def decode_feedback(raw: bytes | None, *, max_text_chars: int | None = None) -> FeedbackEvent:
    return decode(raw, FeedbackEvent, max_text_chars=max_text_chars)


def encode_with_vector(record: BaseModel, vector: np.ndarray) -> bytes:
    """Frame = magic, JSON length, JSON, then the vector as little-endian float32 bytes."""
    body = encode(record)
    vec = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    return _HEADER.pack(_FRAME_MAGIC, len(body)) + body + vec


def decode_with_vector(raw: bytes, model: type[R]) -> tuple[R, np.ndarray]:
    """Inverse of encode_with_vector (internal topics only: the record was validated upstream)."""
    if len(raw) < _HEADER.size:
        raise InvalidRecord("vector frame too short")
    magic, size = _HEADER.unpack_from(raw)
    if magic != _FRAME_MAGIC:
        raise InvalidRecord(f"unknown frame magic {magic!r}")
    body = raw[_HEADER.size : _HEADER.size + size]
    vec_bytes = raw[_HEADER.size + size :]
    if len(vec_bytes) % 4:
        raise InvalidRecord("vector bytes are not float32-aligned")
    record = model.model_validate(orjson.loads(body))
    return record, np.frombuffer(vec_bytes, dtype="<f4").copy()


def dead_letter(
    raw: bytes | None, reason: str, *, stage: str, topic: str, partition: int, offset: int, key: bytes | None
) -> DeadLetter:
    """Wrap a rejected record with its reason and source coordinates."""
    return DeadLetter(
        reason=reason,
        stage=stage,
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "replace") if key is not None else None,
        raw_b64=base64.b64encode(raw or b"").decode(),
        ts=time.time(),
    )
