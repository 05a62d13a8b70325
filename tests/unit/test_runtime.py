"""The worker runtime's embedding queue: chunks run in order on one thread, two queued at a time, so a
query embedded meanwhile waits behind two chunks at most; cancelled chunks are skipped."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from memstream.agents.runtime import Runtime
from memstream.agents.settings import Settings


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
    results = [r async for r in runtime.embed_chunks(texts, 4)]
    assert calls == [texts[0:4], texts[4:8], texts[8:10]]
    assert np.concatenate([v for v, _ in results])[:, 0].tolist() == list(range(10))
    assert all(seconds >= 0 for _, seconds in results)
    await runtime.close()


async def test_a_query_waits_behind_two_chunks_at_most():
    calls: list[list[str]] = []
    gate = threading.Event()
    runtime = _runtime(calls, gate)
    chunks = runtime.embed_chunks([f"t{i}" for i in range(16)], 4)  # 4 chunks; the first blocks on the gate
    query = asyncio.ensure_future(runtime.embed(["q99"]))  # a recall's query, asked while the batch runs
    await asyncio.sleep(0.05)
    gate.set()
    got = [v[:, 0].tolist() async for v, _ in chunks]
    assert (await query)[0, 0] == 99
    assert [c[0] for c in calls] == ["t0", "t4", "q99", "t8", "t12"]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    await runtime.close()


async def test_cancel_skips_the_chunks_not_started():
    calls: list[list[str]] = []
    gate = threading.Event()
    runtime = _runtime(calls, gate)
    chunks = runtime.embed_chunks([f"t{i}" for i in range(12)], 4)  # t0 runs (held by the gate), t4 queued
    await asyncio.sleep(0.05)
    chunks.cancel()  # the agent stopped part way
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.sleep(0.2)
    assert [c[0] for c in calls] == ["t0"]  # the running chunk finishes; the queued and later ones never start
    assert [r async for r in chunks] == []
    await runtime.close()
