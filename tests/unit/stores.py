"""Both store backends for unit tests: an edge store in a temporary directory, or the server code path on
qdrant-client's local mode. An empty edge store is created once and copied (shards cost fsyncs to create)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from qdrant_client import AsyncQdrantClient

from memstream.agents.store import EdgeStore, MemoryStore, ServerStore, StoreConfig

BACKENDS = ["edge", "server"]


def store_config(backend: str, path: Path | None, dim: int, **overrides: object) -> StoreConfig:
    if backend == "edge":
        return StoreConfig(path=path, dim=dim, **overrides)
    return StoreConfig(backend="server", url=":memory:", dim=dim, **overrides)


def backend_store(backend: str, path: Path, dim: int, **overrides: object) -> MemoryStore:
    config = store_config(backend, path, dim, **overrides)
    if backend == "edge":
        return EdgeStore(config)
    return ServerStore(config, client=AsyncQdrantClient(location=":memory:"))


def empty_edge_template(path: Path, dim: int) -> Path:
    """Create a closed, empty edge store at ``path`` to copy from."""

    async def create() -> None:
        async with backend_store("edge", path, dim):
            pass

    asyncio.run(create())
    return path


def fresh_store(backend: str, tmp_path: Path, template: Path, dim: int) -> MemoryStore:
    """A new, not yet opened store of ``backend`` (an edge one copied from ``template``)."""
    path = tmp_path / "edge"
    if backend == "edge":
        shutil.copytree(template, path)
    return backend_store(backend, path, dim)
