"""Run real worker processes against the real broker, each test in its own topic namespace."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.admin import ensure_topics
from streams.settings import KafkaSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Namespace:
    """A unique topic prefix and app id, so tests never see each other's records."""

    def __init__(self, bootstrap: str, root: Path, partitions: int = 4, **env: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.prefix = f"t{tag}."
        self.app_id = f"memstream-test-{tag}"
        self.root = root
        self.kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=self.prefix, partitions=partitions)
        self.env = {
            "MEMSTREAM_KAFKA__BOOTSTRAP": bootstrap,
            "MEMSTREAM_KAFKA__TOPIC_PREFIX": self.prefix,
            "MEMSTREAM_KAFKA__PARTITIONS": str(partitions),
            "MEMSTREAM_WORKER__APP_ID": self.app_id,
            **env,
        }
        self.workers: list[subprocess.Popen] = []

    async def create_topics(self) -> None:
        await ensure_topics(self.kafka)

    def start_worker(self, name: str = "w1", stages: str = "", **env: str) -> subprocess.Popen:
        state = self.root / name
        state.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **self.env, "MEMSTREAM_WORKER__STATE_DIR": str(state),
                    "MEMSTREAM_WORKER__WEB_PORT": str(free_port()), "PYTHONUNBUFFERED": "1", **env}
        cmd = [sys.executable, "-m", "streams.cli", "worker", "--loglevel", os.environ.get("MEMSTREAM_TEST_WORKER_LOGLEVEL", "warning")]
        if stages:
            cmd += ["--stages", stages]
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(proc)
        return proc

    def stop_workers(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc in self.workers:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers.clear()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.root.glob("*.log")))


async def collect(
    kafka: KafkaSettings, topic: str, done: Callable[[list[bytes]], bool], timeout: float = 60.0
) -> list[bytes]:
    """Read `topic` from the beginning until done(values) or the timeout; return all values read."""
    consumer = AIOKafkaConsumer(
        **kafka.client_kwargs(), group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(kafka.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(values):
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for messages in batch.values():
                values.extend(m.value for m in messages)
        return values
    finally:
        await consumer.stop()
