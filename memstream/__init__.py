"""memstream: a streaming, event-driven memory pipeline for AI agents and recommenders.

The public API (the base install, no worker dependencies)::

    from memstream import Publisher, subscribe, MemoryClient, InteractionEvent

    async with Publisher() as publisher:
        await publisher.publish(InteractionEvent(tenant_id="acme", user_id="alice", session_id="s1", text="hi"))
    async with subscribe(tenant_id="acme") as updates:
        async for update in updates: ...
    with MemoryClient("http://127.0.0.1:6066") as memory:
        memory.recall("what did alice say?", tenant_id="acme")

Everything else lives in the sub-packages: ``memstream.streams`` (the wire: contracts, codec, topics, client),
``memstream.agents`` (the worker), ``memstream.models`` (the algorithms), ``memstream.deploy`` (local Kafka and
workers) and ``memstream.cli`` (the command line); the last four need the ``worker`` extra.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("memstream")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS: dict[str, str] = {
    "Publisher": "memstream.streams.client",
    "Subscription": "memstream.streams.client",
    "subscribe": "memstream.streams.client",
    "MemoryClient": "memstream.streams.memory_client",
    "AsyncMemoryClient": "memstream.streams.memory_client",
    "MemoryApiError": "memstream.streams.memory_client",
    "InteractionEvent": "memstream.streams.contracts",
    "FeedbackEvent": "memstream.streams.contracts",
    "MemoryUpdate": "memstream.streams.contracts",
    "InvalidRecord": "memstream.streams.codec",
    "KafkaSettings": "memstream.streams.settings",
}
"""Public name -> the module that defines it (imported on first use, so ``import memstream.models…`` stays cheap)."""

__all__ = [
    "AsyncMemoryClient",
    "FeedbackEvent",
    "InteractionEvent",
    "InvalidRecord",
    "KafkaSettings",
    "MemoryApiError",
    "MemoryClient",
    "MemoryUpdate",
    "Publisher",
    "Subscription",
    "__version__",
    "subscribe",
]

if TYPE_CHECKING:
    from memstream.streams.client import Publisher, Subscription, subscribe
    from memstream.streams.codec import InvalidRecord
    from memstream.streams.contracts import FeedbackEvent, InteractionEvent, MemoryUpdate
    from memstream.streams.memory_client import AsyncMemoryClient, MemoryApiError, MemoryClient
    from memstream.streams.settings import KafkaSettings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'memstream' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
