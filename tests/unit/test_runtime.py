"""The worker runtime's embedding queue: chunks run in order on one thread, and a cancelled chunk is skipped."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from agents.runtime import Runtime
from streams.settings import Settings


def _runtime(calls: list[list[str]], gate: threading.Event) -> Runtime:
    runtime = Runtime(Settings())

    def fake_embed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        if len(calls) == 1:
            assert gate.wait(5), "the test never opened the gate"
        return np.array([[float(t[1:]), 1.0] for t in texts], np.float32)

    runtime._embed_sync = fake_embed  # the real embedder is covered by test_embedder
    return runtime


async def test_chunks_keep_their_order_and_sizes():
    calls: list[list[str]] = []
    gate = threading.Event()
    gate.set()
    runtime = _runtime(calls, gate)
    texts = [f"t{i}" for i in range(10)]
    futures = runtime.embed_chunks(texts, 4)
    results = [await f for f in futures]
    assert calls == [texts[0:4], texts[4:8], texts[8:10]]
    assert np.concatenate([v for v, _ in results])[:, 0].tolist() == list(range(10))
    assert all(seconds >= 0 for _, seconds in results)
    await runtime.close()


async def test_all_chunks_are_queued_at_once_and_a_cancelled_one_is_skipped():
    calls: list[list[str]] = []
    gate = threading.Event()
    runtime = _runtime(calls, gate)
    futures = runtime.embed_chunks([f"t{i}" for i in range(12)], 4)
    assert len(futures) == 3  # all submitted before the first one has finished
    futures[2].cancel()  # not started: the embedder's one thread is still on the first chunk
    await asyncio.sleep(0.05)
    gate.set()
    await futures[0]
    await futures[1]
    await asyncio.sleep(0.1)
    assert calls == [["t0", "t1", "t2", "t3"], ["t4", "t5", "t6", "t7"]]
    await runtime.close()
