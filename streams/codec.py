"""Bytes on the wire: records as orjson JSON, validated on the way in (vector frames: ``frames.py``)."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from memstream.streams.contracts import MAX_DEAD_LETTER_RAW, DeadLetter, FeedbackEvent, InteractionEvent

R = TypeVar("R", bound=BaseModel)


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
