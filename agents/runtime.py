"""Per-worker shared resources: the memory store (opened once, on the loop), the embedder and the language
model (each loaded and run in its own thread)."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from memstream.agents.metrics import Metrics
from memstream.agents.settings import Settings
from memstream.agents.store import make_store

if TYPE_CHECKING:
    from memstream.agents.auth import Guard
    from memstream.agents.forgotten import ForgottenUsers
    from memstream.agents.store import MemoryStore
    from memstream.models.embedder import Embedder
    from memstream.models.language_model import LanguageModel
    from memstream.models.segmenter import Segmenter
    from memstream.models.session_state import SessionState


class LazyLanguageModel:
    """A `models.surprise.TokenScorer` that loads the language model on first use (in the caller's thread)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._model: LanguageModel | None = None
        self._lock = threading.Lock()

    def _get(self) -> LanguageModel:
        with self._lock:
            if self._model is None:
                from memstream.models.language_model import LanguageModel

                self._model = LanguageModel(self._settings.lm)
            return self._model

    def tokenize(self, text: str) -> list[int]:
        return self._get().tokenize(text)

    def nll(self, requests):
        return self._get().nll(requests)


class ChunkedEmbedding:
    """Chunks of texts embedded in order, two at a time on the embedder's thread.

    The first two chunks are queued at once; each time the caller takes a chunk's result (``async for
    vectors, seconds in …``) the next one is queued. So the thread always has the next chunk while the
    caller forwards the last one, and a query embedded meanwhile (a recall) waits behind two chunks at
    most, not behind the whole batch. `cancel` (or leaving the loop early) skips the chunks not started.
    """

    AHEAD = 2

    def __init__(self, submit: Callable[[list[str]], asyncio.Future], texts: Sequence[str], size: int) -> None:
        self._submit = submit
        self._texts = list(texts)
        self._size = size
        self._next = 0
        self._queued: deque[asyncio.Future[tuple[np.ndarray, float]]] = deque()
        for _ in range(self.AHEAD):
            self._queue_next()

    def _queue_next(self) -> None:
        if self._next < len(self._texts):
            self._queued.append(self._submit(self._texts[self._next : self._next + self._size]))
            self._next += self._size

    def __aiter__(self) -> ChunkedEmbedding:
        return self

    async def __anext__(self) -> tuple[np.ndarray, float]:
        if not self._queued:
            raise StopAsyncIteration
        try:
            result = await self._queued[0]
        except BaseException:
            self.cancel()
            raise
        self._queued.popleft()
        self._queue_next()
        return result

    def cancel(self) -> None:
        for future in self._queued:
            future.cancel()
        self._queued.clear()
        self._next = len(self._texts)


class Runtime:
    """What every agent and web view of one worker shares. Nothing here blocks the event loop:
    the embedder loads and runs in its own thread, the store opens on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()  # per-app registry: agents record here, the metrics stage serves it
        self._store: MemoryStore | None = None
        self._stage_store: MemoryStore | None = None
        self._store_lock = asyncio.Lock()
        self._embedder: Embedder | None = None
        self._embed_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-embed")
        self.language_model = LazyLanguageModel(settings)
        self._lm_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-lm")
        self._guard: Guard | None = None
        self._forgotten: ForgottenUsers | None = None
        self._forgotten_task: asyncio.Task[None] | None = None

    async def forgotten(self) -> ForgottenUsers:
        """The deployment's forgotten users, followed from the ``forgotten`` topic (started on first use; waits
        until the topic has been read to its end, so no stage applies a record of a forgotten user first)."""
        if self._forgotten is None:
            from memstream.agents.control_topic import follow_control_topic
            from memstream.agents.forgotten import ForgottenUsers

            users = self._forgotten = ForgottenUsers()
            kafka = self.settings.kafka
            self._forgotten_task = asyncio.create_task(
                follow_control_topic(kafka, kafka.topics.forgotten, users.apply, users.ready.set),
                name="memstream-forgotten",
            )
        await self._forgotten.ready.wait()
        return self._forgotten

    @property
    def guard(self) -> Guard:
        """The HTTP API's gate (credentials, scopes, rate limits), one per worker."""
        if self._guard is None:
            from memstream.agents.auth import Guard

            self._guard = Guard(self.settings)
        return self._guard

    async def store(self) -> MemoryStore:
        if self._store is None:
            async with self._store_lock:
                if self._store is None:
                    store = make_store(self.settings.store, state_dir=self.settings.worker.state_dir)
                    await store.open()
                    self._store = store
        return self._store

    async def stage_store(self) -> MemoryStore:
        """The store the index and errors stages write through: `store()`, or with ``store_faults`` set (a
        test and chaos knob) that store behind `agents.store.faults.FaultyStore`."""
        store = await self.store()
        if not self.settings.store_faults.enabled:
            return store
        if self._stage_store is None:
            from memstream.agents.store.faults import FaultyStore

            self._stage_store = FaultyStore(store, self.settings.store_faults)
        return self._stage_store

    def _embed_sync(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            from memstream.models.embedder import Embedder

            self._embedder = Embedder(self.settings.embedder)
        return self._embedder.embed(texts)

    def _embed_timed(self, texts: list[str]) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        vectors = self._embed_sync(texts)
        return vectors, time.perf_counter() - started

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts in the embedder's thread (one batch at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self._embed_pool, self._embed_sync, texts)

    def embed_chunks(self, texts: Sequence[str], size: int) -> ChunkedEmbedding:
        """Embed ``texts`` in chunks of ``size`` on the embedder's thread; see `ChunkedEmbedding`."""
        submit = functools.partial(asyncio.get_running_loop().run_in_executor, self._embed_pool, self._embed_timed)
        return ChunkedEmbedding(submit, texts, size)

    async def lm_surprises(self, segmenter: Segmenter, items: Sequence[tuple[SessionState, str]]) -> list[float]:
        """`Segmenter.lm_surprises` in the language model's thread (one batch of sessions' events at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self._lm_pool, segmenter.lm_surprises, items)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None
            self._stage_store = None
        self._embed_pool.shutdown(wait=False)
        self._lm_pool.shutdown(wait=False)
