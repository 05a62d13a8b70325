"""Per-worker shared resources: the memory store (opened once, on the loop), the embedder and the language
model (each loaded and run in its own thread)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from agents.metrics import Metrics
from agents.store import make_store
from streams.settings import Settings

if TYPE_CHECKING:
    from agents.store import EdgeStore, ServerStore
    from models.embedder import Embedder
    from models.language_model import LanguageModel
    from models.segmenter import Segmenter, SessionState


class LazyLanguageModel:
    """A `models.surprise.TokenScorer` that loads the language model on first use (in the caller's thread)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._model: LanguageModel | None = None
        self._lock = threading.Lock()

    def _get(self) -> LanguageModel:
        with self._lock:
            if self._model is None:
                from models.language_model import LanguageModel

                self._model = LanguageModel(self._settings.lm)
            return self._model

    def tokenize(self, text: str) -> list[int]:
        return self._get().tokenize(text)

    def nll(self, requests):
        return self._get().nll(requests)


class Runtime:
    """What every agent and web view of one worker shares. Nothing here blocks the event loop:
    the embedder loads and runs in its own thread, the store opens on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()  # per-app registry: agents record here, the metrics stage serves it
        self._store: EdgeStore | ServerStore | None = None
        self._store_lock = asyncio.Lock()
        self._embedder: Embedder | None = None
        self._embed_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-embed")
        self.language_model = LazyLanguageModel(settings)
        self._lm_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-lm")

    async def store(self) -> EdgeStore | ServerStore:
        if self._store is None:
            async with self._store_lock:
                if self._store is None:
                    store = make_store(self.settings.store, state_dir=self.settings.worker.state_dir)
                    await store.open()
                    self._store = store
        return self._store

    def _embed_sync(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            from models.embedder import Embedder

            self._embedder = Embedder(self.settings.embedder)
        return self._embedder.embed(texts)

    def _embed_timed(self, texts: list[str]) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        vectors = self._embed_sync(texts)
        return vectors, time.perf_counter() - started

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts in the embedder's thread (one batch at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self._embed_pool, self._embed_sync, texts)

    def embed_chunks(self, texts: Sequence[str], size: int) -> list[asyncio.Future[tuple[np.ndarray, float]]]:
        """Queue ``texts`` on the embedder's thread in chunks of ``size``, in order: one future per chunk, each
        giving the chunk's vectors and the seconds the embedder spent on them. The thread runs the chunks
        back to back, so it is not left idle while the caller forwards the chunks already done.
        Cancel the futures not awaited (a chunk not started yet is then skipped)."""
        loop = asyncio.get_running_loop()
        return [loop.run_in_executor(self._embed_pool, self._embed_timed, list(texts[i : i + size]))
                for i in range(0, len(texts), size)]

    async def lm_surprises(self, segmenter: Segmenter, items: Sequence[tuple[SessionState, str]]) -> list[float]:
        """`Segmenter.lm_surprises` in the language model's thread (one batch of sessions' events at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self._lm_pool, segmenter.lm_surprises, items)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None
        self._embed_pool.shutdown(wait=False)
        self._lm_pool.shutdown(wait=False)
