"""Kafka credentials for real: the --auth broker (SASL_PLAINTEXT, SCRAM-SHA-512, ACLs), a worker with the
`worker` user's credentials, a Publisher with the `publisher` user's, a subscriber with the `subscriber`
user's; wrong credentials and calls beyond a user's ACLs are refused.

Runs its own broker (temporary data dir, free ports) beside the main test broker, which it never touches.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest
from aiokafka.errors import TopicAuthorizationFailedError
from pydantic import SecretStr
from typer.testing import CliRunner

from memstream.cli.kafka import app as kafka_cli
from memstream.deploy.kafka import KafkaStartError, LocalKafka
from memstream.deploy.kafka.auth import ADMIN
from memstream.deploy.kafka.process import java_executable
from memstream.deploy.workers import free_ports
from memstream.streams.admin import admin_client
from memstream.streams.client import KafkaAuthenticationError, Publisher, subscribe
from memstream.streams.contracts import InteractionEvent, UpdateKind
from tests.integration.harness import Namespace

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _java_or_fail() -> None:
    """Skip without Java on a developer machine; fail in CI (CI=true), where Java must be installed."""
    try:
        java_executable()
    except KafkaStartError as exc:
        message = f"needs Java 17+ to run the Kafka broker: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def auth_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    _java_or_fail()
    port, controller_port = free_ports(2)
    broker = LocalKafka(tmp_path_factory.mktemp("kafka-auth"), port=port, controller_port=controller_port, auth=True)
    broker.up(timeout=120)
    try:
        yield broker
    finally:
        broker.down()


def _namespace(kafka: LocalKafka, tmp_path, partitions: int = 2) -> Namespace:
    """A test namespace whose workers run as `worker`; the harness's own topic clean-up runs as `admin`."""
    ns = Namespace(kafka.bootstrap, tmp_path, partitions=partitions, **kafka.client_env("worker"))
    ns.kafka = kafka.kafka_settings(ADMIN, topic_prefix=ns.prefix, partitions=partitions)
    kafka.grant(ns.prefix, ns.app_id)
    return ns


async def _until_topics_exist(ns: Namespace, timeout: float = 60.0) -> None:
    """Wait until the worker (not the test) has created the namespace's topics."""
    wanted = set(ns.kafka.topics.all())
    deadline = time.monotonic() + timeout
    while True:
        async with admin_client(ns.kafka) as admin:
            missing = wanted - set(await admin.list_topics())
        if not missing:
            return
        assert all(p.poll() is None for p in ns.workers), "the worker exited:\n" + ns.logs()
        assert time.monotonic() < deadline, f"the worker created no {sorted(missing)}:\n" + ns.logs()
        await asyncio.sleep(0.5)


def test_data_dir_holds_private_credentials(auth_kafka: LocalKafka) -> None:
    for path in (auth_kafka.files.credentials_file, auth_kafka.files.server_properties):
        assert path.stat().st_mode & 0o777 == 0o600, path
    status = auth_kafka.status()
    assert status.running and status.ready and status.auth  # the readiness probe authenticated as admin
    passwords = auth_kafka.credentials.passwords
    assert set(passwords) == {"admin", "worker", "publisher", "subscriber"}
    assert len(set(passwords.values())) == 4 and min(len(p) for p in passwords.values()) >= 24


async def test_worker_publisher_and_subscriber_with_their_own_credentials(auth_kafka: LocalKafka, tmp_path) -> None:
    ns = _namespace(auth_kafka, tmp_path)
    ns.start_worker(loglevel="info")  # creates the topics itself, as `worker`
    await _until_topics_exist(ns)
    subscriber = auth_kafka.kafka_settings("subscriber", topic_prefix=ns.prefix, partitions=2)
    publisher = auth_kafka.kafka_settings("publisher", topic_prefix=ns.prefix, partitions=2)
    texts = ["The cat sat on the mat.", "It purred all afternoon.", "Then it slept by the fire."]
    events = [
        InteractionEvent(event_id=f"e{i}", tenant_id="t1", user_id="u1", session_id="s1", ts=1_764_000_000 + i, text=t)
        for i, t in enumerate(texts)
    ]
    async with Publisher(publisher, create_topics=False) as pub:
        await pub.publish_many(events)

    # subscribe() reads memory-updates with the subscriber's own credentials (READ, DESCRIBE on that topic only)
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    async with subscribe(kafka=subscriber, from_beginning=True) as updates:
        while len(seen) < 3 and time.monotonic() < deadline:
            seen |= {u.ids[0] for u in await updates.poll(1.0) if u.kind == UpdateKind.EVENT_INDEXED}
    ns.stop_workers()
    assert seen == {e.event_id for e in events}, ns.logs()
    assert "AUTHORIZATION_FAILED" not in ns.logs().upper(), ns.logs()  # the worker's ACLs are enough


async def test_wrong_password_is_refused_with_a_clear_error(auth_kafka: LocalKafka) -> None:
    wrong = auth_kafka.kafka_settings("publisher").model_copy(update={"sasl_password": SecretStr("not-the-password")})
    for create_topics in (False, True):
        with pytest.raises(KafkaAuthenticationError, match="authentication failed for user 'publisher'") as caught:
            async with Publisher(wrong, create_topics=create_topics):
                pass
        assert "not-the-password" not in str(caught.value)
    unknown = wrong.model_copy(update={"sasl_username": "mallory"})
    with pytest.raises(KafkaAuthenticationError, match="authentication failed for user 'mallory'"):
        async with Publisher(unknown, create_topics=False):
            pass


async def test_a_user_gets_only_what_its_acls_allow(auth_kafka: LocalKafka, tmp_path) -> None:
    ns = _namespace(auth_kafka, tmp_path)
    await ns.create_topics()  # as admin
    publisher = auth_kafka.kafka_settings("publisher", topic_prefix=ns.prefix, partitions=2)
    async with Publisher(publisher, create_topics=False) as pub:
        await pub.publish_raw(ns.kafka.topics.interactions, b"{}", key=b"t/s")  # allowed
        with pytest.raises(TopicAuthorizationFailedError):  # memory-updates is the workers' to write
            await pub.publish_raw(ns.kafka.topics.memory_updates, b"{}", key=b"t/s")
    # the other deployment's prefix is granted to nobody
    other = publisher.model_copy(update={"topic_prefix": "other."})
    async with Publisher(other, create_topics=False) as pub:
        with pytest.raises(TopicAuthorizationFailedError):
            await pub.publish_raw(other.topics.interactions, b"{}", key=b"t/s")


def test_cli_prints_where_the_credentials_are_and_the_variables(auth_kafka: LocalKafka) -> None:
    runner = CliRunner()
    data_dir = str(auth_kafka.data_dir)
    result = runner.invoke(kafka_cli, ["up", "--auth", "--data-dir", data_dir, "--port", str(auth_kafka.port)])
    assert result.exit_code == 0, result.output
    assert auth_kafka.bootstrap in result.stdout
    assert str(auth_kafka.files.credentials_file) in result.stderr and "0600" in result.stderr
    result = runner.invoke(kafka_cli, ["env", "worker", "--data-dir", data_dir])
    assert result.exit_code == 0, result.output
    assert f"export MEMSTREAM_KAFKA__BOOTSTRAP={auth_kafka.bootstrap}" in result.stdout
    assert "export MEMSTREAM_KAFKA__SECURITY_PROTOCOL=SASL_PLAINTEXT" in result.stdout
    assert "export MEMSTREAM_KAFKA__SASL_MECHANISM=SCRAM-SHA-512" in result.stdout
    assert "export MEMSTREAM_KAFKA__SASL_USERNAME=worker" in result.stdout
    assert f"MEMSTREAM_KAFKA__SASL_PASSWORD={auth_kafka.credentials.password('worker')}" in result.stdout
    # the plain broker's command refuses this data dir instead of starting it without authentication
    result = runner.invoke(kafka_cli, ["up", "--data-dir", data_dir, "--port", str(auth_kafka.port)])
    assert result.exit_code == 1 and "--auth" in result.stderr
