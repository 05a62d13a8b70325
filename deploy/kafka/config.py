"""Defaults (with their environment variables) and the files of one single-node KRaft broker."""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from memstream.deploy.kafka.auth import Credentials, auth_properties
from memstream.models.assets import cache_dir

KAFKA_VERSION = "4.4.0"
"""Newest Apache Kafka 4.x served by Maven Central when this was written (override: MEMSTREAM_KAFKA_VERSION)."""

DEFAULT_PORT = 9092
DEFAULT_AUTH_PORT = 9096
"""Port of the --auth broker (SASL), so that it runs beside the default one (9092, controller 9093)."""
DEFAULT_HOST = "127.0.0.1"
DEFAULT_HEAP = "512m"

ENV_VERSION = "MEMSTREAM_KAFKA_VERSION"
ENV_DATA_DIR = "MEMSTREAM_KAFKA_DATA_DIR"
ENV_PORT = "MEMSTREAM_KAFKA_PORT"
ENV_CONTROLLER_PORT = "MEMSTREAM_KAFKA_CONTROLLER_PORT"
ENV_AUTH_DATA_DIR = "MEMSTREAM_KAFKA_AUTH_DATA_DIR"
ENV_AUTH_PORT = "MEMSTREAM_KAFKA_AUTH_PORT"


def default_version() -> str:
    """Kafka version to run: ``MEMSTREAM_KAFKA_VERSION`` or :data:`KAFKA_VERSION`."""
    return os.environ.get(ENV_VERSION) or KAFKA_VERSION


def default_data_dir(auth: bool = False) -> Path:
    """Broker data dir: ``MEMSTREAM_KAFKA_DATA_DIR`` or ``<memstream cache>/kafka-data``; with `auth`,
    ``MEMSTREAM_KAFKA_AUTH_DATA_DIR`` or ``<memstream cache>/kafka-auth-data``."""
    env = os.environ.get(ENV_AUTH_DATA_DIR if auth else ENV_DATA_DIR)
    return Path(env).expanduser() if env else cache_dir() / ("kafka-auth-data" if auth else "kafka-data")


def _env_port(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not a port number") from exc


def default_port(auth: bool = False) -> int:
    """Broker port: ``MEMSTREAM_KAFKA_PORT`` or 9092; with `auth`, ``MEMSTREAM_KAFKA_AUTH_PORT`` or 9096."""
    if auth:
        return _env_port(ENV_AUTH_PORT) or DEFAULT_AUTH_PORT
    return _env_port(ENV_PORT) or DEFAULT_PORT


def default_controller_port(port: int, auth: bool = False) -> int:
    """KRaft controller port: ``MEMSTREAM_KAFKA_CONTROLLER_PORT`` (plain broker only) or broker port + 1."""
    return (None if auth else _env_port(ENV_CONTROLLER_PORT)) or port + 1


def new_cluster_id() -> str:
    """A random KRaft cluster id in Kafka's format (URL-safe base64 of a UUID, no padding)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


@dataclass(frozen=True)
class BrokerFiles:
    """Paths inside a broker data dir."""

    root: Path

    @property
    def server_properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j_config(self) -> Path:
        return self.root / "log4j2.properties"

    @property
    def log_dirs(self) -> Path:
        return self.root / "kraft-logs"

    @property
    def meta_properties(self) -> Path:
        return self.log_dirs / "meta.properties"

    @property
    def cluster_id_file(self) -> Path:
        return self.root / "cluster.id"

    @property
    def credentials_file(self) -> Path:
        """Passwords of an --auth broker's users (mode 0600); its presence marks the data dir as --auth."""
        return self.root / "credentials.json"

    @property
    def pid_file(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def state_file(self) -> Path:
        return self.root / "kafka.state.json"

    @property
    def log_file(self) -> Path:
        return self.root / "kafka.log"


def cluster_id(files: BrokerFiles) -> str:
    """The data dir's cluster id: from formatted storage, else the kept id file, else a new one (kept)."""
    if files.meta_properties.exists():
        for line in files.meta_properties.read_text().splitlines():
            if line.startswith("cluster.id="):
                value = line.split("=", 1)[1].strip()
                files.cluster_id_file.write_text(value + "\n")
                return value
    if files.cluster_id_file.exists():
        value = files.cluster_id_file.read_text().strip()
        if value:
            return value
    value = new_cluster_id()
    files.cluster_id_file.write_text(value + "\n")
    return value


def server_properties(
    files: BrokerFiles, *, host: str, port: int, controller_port: int, auth: Credentials | None = None
) -> str:
    """server.properties of one combined broker+controller node tuned for dev/test (replication 1).

    With `auth`: the client listener is SASL_PLAINTEXT (SCRAM-SHA-512), the controller listener SASL_PLAINTEXT
    (PLAIN, one static user), and the StandardAuthorizer denies what no ACL allows (see deploy.kafka.auth)."""
    client = "SASL" if auth else "PLAINTEXT"
    protocol = "SASL_PLAINTEXT" if auth else "PLAINTEXT"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # Static one-voter quorum: ports may change between runs without re-formatting storage.
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": f"{client}://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"{client}://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": client,
        "listener.security.protocol.map": f"CONTROLLER:{protocol},{client}:{protocol}",
        "log.dirs": str(files.log_dirs),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "8",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
        "log.segment.bytes": str(256 * 1024 * 1024),
    }
    if auth:
        settings.update(auth_properties(auth, client_listener=client, controller_listener="CONTROLLER"))
    header = "# Written by memstream (deploy.kafka) on every `up`; edits are overwritten.\n"
    return header + "".join(f"{key}={value}\n" for key, value in settings.items())
