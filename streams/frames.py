"""Records that carry a vector on internal topics (``embedded``, ``episodes``): a compact binary frame.

Frame = magic (which record type), JSON length, the record's JSON, then the vector as little-endian float32.
"""

from __future__ import annotations

import struct
from typing import TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from memstream.streams.codec import InvalidRecord, encode
from memstream.streams.contracts import EpisodeRecord, InteractionEvent

R = TypeVar("R", bound=BaseModel)

_HEADER = struct.Struct(">4sI")
_MAGIC_BY_MODEL: dict[str, bytes] = {"InteractionEvent": b"MSV1", "EpisodeRecord": b"MSE1"}
_MODEL_BY_MAGIC: dict[bytes, type[BaseModel]] = {b"MSV1": InteractionEvent, b"MSE1": EpisodeRecord}


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
    model = _MODEL_BY_MAGIC.get(magic)
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
