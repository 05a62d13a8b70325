"""The local Kafka broker (deploy.kafka): real jars from Maven, a real JVM, real produce/consume.

Runs its own broker on a temporary data dir and free ports, so it can run beside the main test broker.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from memstream.deploy.kafka import LocalKafka, PortInUseError
from memstream.deploy.kafka.process import port_open
from memstream.deploy.workers import free_ports as _free_ports
from tests.conftest import require_java

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    require_java()  # skips on a developer machine without Java, fails in CI
    port, controller_port = _free_ports(2)
    broker = LocalKafka(tmp_path_factory.mktemp("kafka-data"), port=port, controller_port=controller_port)
    broker.up(timeout=120)
    try:
        yield broker
    finally:
        broker.down()


async def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _consume_one(bootstrap: str, topic: str, group: str) -> bytes:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        await consumer.commit()
        value = record.value
        assert isinstance(value, bytes)
        return value
    finally:
        await consumer.stop()


def test_up_reports_running(kafka: LocalKafka) -> None:
    status = kafka.status()
    assert status.running and status.ready
    assert status.bootstrap == f"127.0.0.1:{kafka.port}"
    assert status.version == kafka.version and status.version.startswith("4.")
    assert status.pid is not None and kafka.is_running()
    assert (kafka.data_dir / "kafka.pid").read_text().strip() == str(status.pid)


def test_second_up_is_a_no_op(kafka: LocalKafka) -> None:
    pid = kafka.status().pid
    again = LocalKafka(kafka.data_dir, port=kafka.port, controller_port=kafka.controller_port)
    assert again.up(timeout=30) == kafka.bootstrap
    assert again.status().pid == pid


def test_port_taken_by_another_process_is_a_clear_error(kafka: LocalKafka, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port}"):
            LocalKafka(tmp_path, port=port, controller_port=_free_ports(1)[0], progress=False).up(timeout=10)
    with pytest.raises(PortInUseError, match="broker port"):  # the running broker's port, other data dir
        LocalKafka(tmp_path / "other", port=kafka.port, progress=False).up(timeout=10)


async def test_produce_and_consume(kafka: LocalKafka) -> None:
    topic = f"memstream.test.{uuid.uuid4().hex[:8]}"
    await _produce(kafka.bootstrap, topic, b"hello kafka")
    assert await _consume_one(kafka.bootstrap, topic, group="g1") == b"hello kafka"


def test_down_then_up_keeps_data(kafka: LocalKafka) -> None:
    topic = f"memstream.test.{uuid.uuid4().hex[:8]}"
    asyncio.run(_produce(kafka.bootstrap, topic, b"kept"))
    pid = kafka.status().pid
    assert kafka.down() is True
    assert not kafka.is_running() and not port_open("127.0.0.1", kafka.port)
    assert kafka.status().running is False
    assert kafka.down() is False  # already stopped: harmless
    kafka.up(timeout=120)
    assert kafka.status().pid != pid
    assert asyncio.run(_consume_one(kafka.bootstrap, topic, group="g2")) == b"kept"
