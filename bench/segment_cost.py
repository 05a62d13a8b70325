"""Per-event cost of the streaming segmenter next to the embedder's, on the same texts. JSON out.

The embed stage is timed as the worker runs it (`Embedder.embed` on batches of the configured size),
then the same vectors are pushed one by one through `Segmenter.push`, one session per dev-set article.
``push_state_roundtrip_us`` adds the session state read from bytes before the push and written back after
it (with its vectors): what a session costs when it is not in the segment stage's cache.
``push_state_write_us`` is what the stage does per event for a cached session
(`agents.session_store.SessionStore.save`): the push, the state's header written without its vectors, and
the new event's vector bytes. Target: segmentation ≤ 10 % of the embed stage.

Run: ``python -m bench.segment_cost [--events N]``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Literal

import numpy as np

from memstream.models.segmentation_config import SegmentationConfig
from memstream.models.segmenter import Segmenter
from memstream.models.session_state import SessionState


def _push_all(
    segmenter: Segmenter, streams: list[tuple[str, np.ndarray]], mode: Literal["push", "roundtrip", "write"]
) -> tuple[float, int, int]:
    """Seconds to push every event (flushes included), with the state's round trip or the cached
    session's write (``mode``); also the largest state in events and bytes."""
    most_events = most_bytes = 0
    start = time.perf_counter()
    for name, vectors in streams:
        blob = SessionState().to_bytes()
        state = SessionState.from_bytes(blob)
        for i, v in enumerate(vectors):
            if mode == "roundtrip":
                state = SessionState.from_bytes(blob)
            segmenter.push(state, f"{name}:{i}", float(i), v)
            if mode == "roundtrip":
                blob = state.to_bytes()
                most_bytes = max(most_bytes, len(blob))
            elif mode == "write" and len(state):
                blob = state.to_bytes(vectors=False) + state.vector_bytes(len(state) - 1)
            most_events = max(most_events, len(state))
        segmenter.flush(state)
    return time.perf_counter() - start, most_events, most_bytes


def run(events: int = 2000, config: SegmentationConfig | None = None, repeats: int = 3) -> dict[str, Any]:
    from bench.segmentation_data import load_dev_set
    from memstream.models.embedder import Embedder, EmbedderConfig

    records = load_dev_set()[:events]
    texts = [r["text"] for r in records]
    embed_config = EmbedderConfig()
    embedder = Embedder(embed_config)
    embedder.embed(texts[: embed_config.batch_size])  # warm-up
    embed_s = []
    for _ in range(repeats):
        t = time.perf_counter()
        vectors = embedder.embed(texts)
        embed_s.append(time.perf_counter() - t)
    one = texts[:200]
    t = time.perf_counter()
    for text in one:
        embedder.embed([text])
    embed_single_us = (time.perf_counter() - t) / len(one) * 1e6

    rows: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        rows.setdefault(r["stream"], []).append(i)
    streams = [(name, vectors[idx]) for name, idx in rows.items()]
    segmenter = Segmenter(config or SegmentationConfig())
    push_s = min(_push_all(segmenter, streams, "push")[0] for _ in range(repeats))
    rt = [_push_all(segmenter, streams, "roundtrip") for _ in range(repeats)]
    roundtrip_s = min(r[0] for r in rt)
    write_s = min(_push_all(segmenter, streams, "write")[0] for _ in range(repeats))
    n = len(texts)
    embed_us = min(embed_s) / n * 1e6
    push_us = push_s / n * 1e6
    roundtrip_us = roundtrip_s / n * 1e6
    write_us = write_s / n * 1e6
    return {
        "events": n,
        "sessions": len(streams),
        "embedder": repr(embedder),
        "embed_batch_size": embed_config.batch_size,
        "embed_us_per_event": round(embed_us, 1),
        "embed_batch1_us_per_event": round(embed_single_us, 1),
        "push_us_per_event": round(push_us, 1),
        "push_state_roundtrip_us_per_event": round(roundtrip_us, 1),
        "push_state_write_us_per_event": round(write_us, 1),
        "push_over_embed": round(push_us / embed_us, 4),
        "push_state_roundtrip_over_embed": round(roundtrip_us / embed_us, 4),
        "push_state_write_over_embed": round(write_us / embed_us, 4),
        "state_max_events": max(r[1] for r in rt),
        "state_max_bytes": max(r[2] for r in rt),
        "state_bound_events": segmenter.config.state_bound,
        "target_max_ratio": 0.10,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(run(args.events), indent=2))
