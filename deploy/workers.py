"""Worker processes on this machine, each deployment in its own topic namespace (demo, benchmarks, tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path

from memstream.streams.access import new_key, publish_key
from memstream.streams.admin import delete_topics, ensure_topics
from memstream.streams.settings import KafkaSettings


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


class Deployment:
    """A unique topic prefix and app id (consumer group), and the `memstream worker` processes run in it."""

    def __init__(self, bootstrap: str, root: Path, partitions: int = 4, tag: str | None = None, **env: str) -> None:
        tag = tag or uuid.uuid4().hex[:8]
        self.prefix = f"t{tag}."
        self.app_id = f"memstream-{tag}"
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=self.prefix, partitions=partitions)
        self.env = {
            "MEMSTREAM_KAFKA__BOOTSTRAP": bootstrap,
            "MEMSTREAM_KAFKA__TOPIC_PREFIX": self.prefix,
            "MEMSTREAM_KAFKA__PARTITIONS": str(partitions),
            "MEMSTREAM_WORKER__APP_ID": self.app_id,
            # Local deployments serve their API on 127.0.0.1 without credentials unless asked for
            # (MEMSTREAM_AUTH__MODE="keys", then keys from create_key)
            "MEMSTREAM_AUTH__MODE": "none",
            **env,
        }
        self.workers: list[subprocess.Popen] = []
        self.ports: dict[str, int] = {}

    async def create_topics(self) -> None:
        await ensure_topics(self.kafka)

    async def delete_topics(self) -> list[str]:
        """Delete this deployment's topics: its prefix's, and the table changelogs and Faust's internal
        topics, which carry its app id. Stop its workers first."""
        return await delete_topics(self.kafka, lambda name: name.startswith(self.prefix) or self.app_id in name)

    async def create_key(self, tenant_id: str, scopes: Iterable[str], *, user_id: str | None = None) -> str:
        """A new API key of this deployment (its ``access`` topic), for workers run with auth mode keys."""
        token, record = new_key(tenant_id, scopes, user_id=user_id)
        await publish_key(self.kafka, record)
        return token

    def start_worker(
        self, name: str = "w1", stages: str = "", loglevel: str | None = None, **env: str
    ) -> subprocess.Popen:
        """Start `memstream worker` with its own state dir and web port (see ``ports[name]``)."""
        state = self.root / name
        state.mkdir(parents=True, exist_ok=True)
        port = int(env.get("MEMSTREAM_WORKER__WEB_PORT") or free_port())
        self.ports[name] = port
        full_env = {
            **os.environ,
            **self.env,
            "MEMSTREAM_WORKER__STATE_DIR": str(state),
            "MEMSTREAM_WORKER__WEB_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        level = loglevel or os.environ.get("MEMSTREAM_TEST_WORKER_LOGLEVEL", "warning")
        cmd = [sys.executable, "-m", "memstream.cli", "worker", "--loglevel", level]
        if stages:
            cmd += ["--stages", stages]
        with open(self.root / f"{name}.log", "ab") as log:
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
