"""A session's segmenter state (`SessionState`) and its byte format.

`models.segmenter.Segmenter` keeps everything it needs between a session's events here: the unsealed events
(id, ts, a unit vector, score; the text and LM surprise where the config uses them), the counters that place
them in the session, and the score histories. Its size is bounded by
`models.segmentation_config.SegmentationConfig.state_bound`.

Vectors are kept at float16 precision (rounded on arrival by the segmenter, so a state that went through
bytes decides exactly as one that did not): the state is written to the table's changelog after every event,
and half the bytes is half the broker's and RocksDB's work, for a cosine error below 1e-3.

Byte format (`SessionState.to_bytes`): ``MSEG``, the header's length (4 bytes, little-endian), the JSON
header (counters, ids, ts, texts, acts, scores with NaN as null, histories, per-scale values, the latest ts
and pauses, the correlation sums with their vector sum as base64 little-endian float32, ``"v": 4``), then the
vectors as raw little-endian float16 rows, or nothing for a caller that stores each event's vector apart.
Versions 1 (float32 vectors), 2 (no per-scale values, latest ts or pauses: they start empty, so the first
event after such a restart cannot be taken for a long pause) and 3 (no correlation sums or acts: they start
afresh) are still read. `SessionState.to_dict` is the same as JSON, the vectors in base64.
"""

from __future__ import annotations

import base64
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from memstream.models.correlation_length import MAX_LAG, CorrelationSums

__all__ = ["STATE_VERSION", "SessionState"]

STATE_VERSION = 4  # 1: float32 vectors; 2: no scale history, pauses or last ts; 3: per-scale past values only
_MAGIC = b"MSEG"
_STORED = "<f2"  # dtype of stored vectors (version 2)


@dataclass
class SessionState:
    """Per-session segmenter state: the unsealed events and a few counters. Serialisable, bounded.

    Indices count events since the session began: ``base`` is the first buffered event, ``open_from``
    the first unsealed one (events between them are kept only as surprise context).
    """

    dim: int = 0
    seen: int = 0
    base: int = 0
    open_from: int = 0
    cursor: int = 0
    cur_start: int = 0
    pending: int | None = None
    armed: int | None = None
    episode_index: int = -1
    ids: list[str] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    history: list[float] = field(default_factory=list)
    lm: list[float] = field(default_factory=list)  # LM surprise per buffered event (LM configs only)
    lm_context: list[int] = field(default_factory=list)  # the session's latest token ids (LM configs only)
    lm_history: list[float] = field(default_factory=list)  # blend: previous LM surprises
    emb_history: list[float] = field(default_factory=list)  # blend: previous embedding scores
    # multiscale: per scale, its values at events scale_from[i] on (the blend: its latest values, scale_from unused)
    scale_values: list[list[float]] = field(default_factory=list)
    scale_from: list[int] = field(default_factory=list)  # multiscale: the event index of each scale's first value
    acts: list[bool] = field(default_factory=list)  # reply cue: whether each buffered event is a question
    correlation: CorrelationSums = field(default_factory=CorrelationSums)  # multiscale: the session's running sums
    last_ts: float | None = None  # the latest event's ts (None: no event yet, or a version 1/2 state)
    gaps: list[float] = field(default_factory=list)  # the session's latest pauses between events, seconds
    conversations: list[int] = field(default_factory=list)  # events in each of the latest pause-delimited conversations
    conversation_start: int = 0  # the first event after the latest long pause
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    def _header(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "dim": self.dim,
            "seen": self.seen,
            "base": self.base,
            "open_from": self.open_from,
            "cursor": self.cursor,
            "cur_start": self.cur_start,
            "pending": self.pending,
            "armed": self.armed,
            "episode_index": self.episode_index,
            "ids": self.ids,
            "ts": self.ts,
            "texts": self.texts,
            "scores": [None if s != s else s for s in self.scores],  # NaN (not scored) as null
            "history": self.history,
            "lm": [None if s != s else s for s in self.lm],
            "lm_context": self.lm_context,
            "lm_history": self.lm_history,
            "emb_history": self.emb_history,
            "scale_values": self.scale_values,
            "scale_from": self.scale_from,
            "acts": self.acts,
            "correlation": {
                "count": self.correlation.count,
                "sum": base64.b64encode(self.correlation.vector_sum.astype("<f4").tobytes()).decode(),
                "lag_sums": self.correlation.lag_sums,
                "lag_counts": self.correlation.lag_counts,
                "lag1_squares": self.correlation.lag1_squares,
            },
            "last_ts": self.last_ts,
            "gaps": self.gaps,
            "conversations": self.conversations,
            "conversation_start": self.conversation_start,
        }

    def drop_buffered(self) -> None:
        """Forget every buffered event without sealing it, for a state whose vectors were lost. Counters
        and score history go on: the next event opens a new episode with a new index."""
        self.open_from = self.cursor = self.cur_start = self.base = self.seen
        self.pending = self.armed = None
        self.ids, self.ts, self.texts, self.scores, self.lm, self.acts = [], [], [], [], [], []
        self.scale_values, self.scale_from = [], []
        self.vectors = np.zeros((0, self.dim), np.float32)

    def vector_bytes(self, i: int | None = None) -> bytes:
        """Stored form (little-endian float16) of the vector of ``ids[i]``, or of all of them."""
        return np.ascontiguousarray(self.vectors if i is None else self.vectors[i], dtype=_STORED).tobytes()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; vectors as base64 of little-endian float16 bytes, NaN scores as null."""
        data = copy.deepcopy(self._header())
        data["vectors"] = base64.b64encode(self.vector_bytes()).decode()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionState:
        return cls._load(data, base64.b64decode(data["vectors"]))

    @classmethod
    def _load(cls, data: dict[str, Any], vector_bytes: bytes) -> SessionState:
        if data.get("v") not in (1, 2, 3, STATE_VERSION):
            raise ValueError(f"unsupported segmenter state version {data.get('v')!r}")
        dim = int(data["dim"])
        stored = "<f4" if data["v"] == 1 else _STORED
        raw = np.frombuffer(vector_bytes, dtype=stored).astype(np.float32)  # a writable copy
        return cls(
            dim=dim,
            seen=int(data["seen"]),
            base=int(data["base"]),
            open_from=int(data["open_from"]),
            cursor=int(data["cursor"]),
            cur_start=int(data["cur_start"]),
            pending=None if data["pending"] is None else int(data["pending"]),
            armed=None if data["armed"] is None else int(data["armed"]),
            episode_index=int(data["episode_index"]),
            ids=list(data["ids"]),
            ts=[float(t) for t in data["ts"]],
            texts=list(data["texts"]),
            scores=[math.nan if s is None else float(s) for s in data["scores"]],
            history=[float(h) for h in data["history"]],
            lm=[math.nan if s is None else float(s) for s in data.get("lm", [])],
            lm_context=[int(t) for t in data.get("lm_context", [])],
            lm_history=[float(h) for h in data.get("lm_history", [])],
            emb_history=[float(h) for h in data.get("emb_history", [])],
            scale_values=[[float(h) for h in row] for row in data.get("scale_values", [])],
            scale_from=[int(i) for i in data.get("scale_from", [])],
            acts=[bool(a) for a in data.get("acts", [])],
            correlation=_correlation(data.get("correlation")),
            last_ts=None if data.get("last_ts") is None else float(data["last_ts"]),
            gaps=[float(g) for g in data.get("gaps", [])],
            conversations=[int(n) for n in data.get("conversations", [])],
            conversation_start=int(data.get("conversation_start", 0)),
            vectors=raw.reshape(len(data["ids"]), dim) if dim else np.zeros((0, 0), np.float32),
        )

    def to_bytes(self, *, vectors: bool = True) -> bytes:
        """Compact binary form: magic, 4-byte header length, JSON header, raw little-endian float16 vectors.
        ``vectors=False`` leaves the vectors out, for a caller that stores each event's vector apart
        (`vector_bytes` gives one row) and hands them back to `from_bytes`."""
        head = orjson.dumps(self._header())
        return _MAGIC + len(head).to_bytes(4, "little") + head + (self.vector_bytes() if vectors else b"")

    @classmethod
    def from_bytes(cls, data: bytes, vectors: Callable[[list[str]], bytes | None] | None = None) -> SessionState:
        """Inverse of `to_bytes`. For a state written without its vectors, ``vectors(ids)`` returns the
        concatenated `vector_bytes` of those event ids, in order, or None if some are lost: the state then
        comes back with nothing buffered (`drop_buffered`)."""
        if not data.startswith(_MAGIC):
            raise ValueError("not a segmenter state")
        size = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 4], "little")
        start = len(_MAGIC) + 4
        header = orjson.loads(data[start : start + size])
        raw = data[start + size :]
        if not raw and header["ids"] and header["dim"]:
            if vectors is None:
                raise ValueError("segmenter state was stored without its vectors, and none were given")
            found = vectors(list(header["ids"]))
            if found is None:
                state = cls._load(header, bytes(len(header["ids"]) * int(header["dim"]) * np.dtype(_STORED).itemsize))
                state.drop_buffered()
                return state
            raw = found
        return cls._load(header, raw)


def _correlation(data: dict[str, Any] | None) -> CorrelationSums:
    """The running sums of a header (a version 1–3 state has none: they start afresh)."""
    if not data:
        return CorrelationSums()
    return CorrelationSums(
        count=int(data["count"]),
        vector_sum=np.frombuffer(base64.b64decode(data["sum"]), dtype="<f4").astype(np.float32),
        lag_sums=[float(x) for x in data["lag_sums"]][:MAX_LAG],
        lag_counts=[int(x) for x in data["lag_counts"]][:MAX_LAG],
        lag1_squares=float(data.get("lag1_squares", 0.0)),
    )
