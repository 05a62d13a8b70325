"""Bytes on the wire: orjson for records, a compact binary frame for records that carry a vector."""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from typing import TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from streams.contracts import MAX_DEAD_LETTER_RAW, DeadLetter, FeedbackEvent, InteractionEvent

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


def validation_reason(exc: ValidationError) -> str:
    """A pydantic error as one readable line (first five problems)."""
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
    if type(version) is not int or version != 1:
        raise InvalidRecord(f"unknown schema_version {version!r} (this reader knows 1)")
    context = {"max_text_chars": max_text_chars} if max_text_chars else None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise InvalidRecord(validation_reason(exc)) from None


def decode_interaction(raw: bytes | None, *, max_text_chars: int | None = None) -> InteractionEvent:
    return decode(raw, InteractionEvent, max_text_chars=max_text_chars)


def decode_feedback(raw: bytes | None, *, max_text_chars: int | None = None) -> FeedbackEvent:
    return decode(raw, FeedbackEvent, max_text_chars=max_text_chars)


_MAGIC_BY_MODEL: dict[str, bytes] = {"InteractionEvent": b"MSV1", "EpisodeRecord": b"MSE1"}
_MODEL_BY_MAGIC: dict[bytes, type[BaseModel]] = {}


def _frame_models() -> dict[bytes, type[BaseModel]]:
    if not _MODEL_BY_MAGIC:
        from streams.contracts import EpisodeRecord

        _MODEL_BY_MAGIC.update({b"MSV1": InteractionEvent, b"MSE1": EpisodeRecord})
    return _MODEL_BY_MAGIC


def encode_with_vector(record: BaseModel, vector: np.ndarray) -> bytes:
    """Frame = magic (which record type), JSON length, JSON, then the vector as little-endian float32."""
    magic = _MAGIC_BY_MODEL[type(record).__name__]
    body = encode(record)
    vec = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    return _HEADER.pack(magic, len(body)) + body + vec


def decode_frame(raw: bytes | None) -> tuple[BaseModel, np.ndarray]:
    """Inverse of encode_with_vector for any framed record type (internal topics)."""
    if raw is None or len(raw) < _HEADER.size:
        raise InvalidRecord("vector frame too short")
    magic, size = _HEADER.unpack_from(raw)
    model = _frame_models().get(magic)
    if model is None:
        raise InvalidRecord(f"unknown frame magic {magic!r}")
    body = raw[_HEADER.size : _HEADER.size + size]
    vec_bytes = raw[_HEADER.size + size :]
    if len(body) != size or len(vec_bytes) % 4:
        raise InvalidRecord("truncated vector frame")
    try:
        record = model.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise InvalidRecord(f"bad framed record: {exc}") from None
    return record, np.frombuffer(vec_bytes, dtype="<f4").copy()


def decode_with_vector(raw: bytes | None, model: type[R]) -> tuple[R, np.ndarray]:
    """decode_frame, insisting on one record type."""
    record, vector = decode_frame(raw)
    if not isinstance(record, model):
        raise InvalidRecord(f"expected a {model.__name__} frame, got {type(record).__name__}")
    return record, vector


def dead_letter(
    raw: bytes | None, reason: str, *, stage: str, topic: str, partition: int, offset: int, key: bytes | None
) -> DeadLetter:
    """Wrap a rejected record with its reason and source coordinates (raw bytes capped, hash kept)."""
    raw = raw or b""
    return DeadLetter(
        reason=reason,
        stage=stage,
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "replace") if key is not None else None,
        raw_b64=base64.b64encode(raw[:MAX_DEAD_LETTER_RAW]).decode(),
        raw_size=len(raw),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        raw_truncated=len(raw) > MAX_DEAD_LETTER_RAW,
        ts=time.time(),
    )
