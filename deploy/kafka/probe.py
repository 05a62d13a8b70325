"""Readiness probe: a real Kafka Metadata request through aiokafka's admin client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from sync code, also when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def describe_cluster(
    bootstrap: str, timeout: float = 3.0, security: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Cluster metadata (``cluster_id``, ``brokers``, ``controller_id``) or None if the broker isn't serving.

    `security`: aiokafka's security keyword arguments (``security_protocol``, ``sasl_*``) for a SASL broker."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # connection-refused noise while the broker boots
    options = {k: v for k, v in (security or {}).items() if k != "bootstrap_servers"}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="memstream-kafka-probe",
        request_timeout_ms=int(timeout * 1000),
        **options,
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        info = await asyncio.wait_for(admin.describe_cluster(), timeout)
        return info if info.get("brokers") else None
    except Exception:
        return None
    finally:
        try:
            await admin.close()
        except Exception:
            pass
        quiet.setLevel(level)


def cluster_info(bootstrap: str, timeout: float = 3.0, security: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Sync wrapper of :func:`describe_cluster`."""
    return run_sync(describe_cluster(bootstrap, timeout, security))
