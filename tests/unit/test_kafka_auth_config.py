"""The --auth broker's files and ACLs, without a broker (deploy.kafka.auth, deploy.kafka.config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memstream.deploy.kafka import KafkaStartError, LocalKafka
from memstream.deploy.kafka.auth import (
    USERS,
    AclBinding,
    Operation,
    PatternType,
    ResourceType,
    component_acls,
    load_or_create_credentials,
)
from memstream.deploy.kafka.config import BrokerFiles, default_data_dir, default_port, server_properties


def _props(text: str) -> dict[str, str]:
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


def test_credentials_are_random_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    first = load_or_create_credentials(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert set(first.passwords) == set(USERS)
    assert len({*first.passwords.values(), first.controller_password}) == len(USERS) + 1
    assert load_or_create_credentials(path) == first  # the same data dir keeps its passwords
    assert load_or_create_credentials(tmp_path / "other.json") != first
    assert json.loads(path.read_text())["users"]["worker"] == first.password("worker")
    with pytest.raises(KeyError, match="no user 'mallory'"):
        first.password("mallory")


def test_credentials_readable_by_others_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    load_or_create_credentials(path)
    path.chmod(0o644)
    with pytest.raises(KafkaStartError, match="chmod 600"):
        load_or_create_credentials(path)


def test_plain_broker_properties_are_unchanged_by_auth_support(tmp_path: Path) -> None:
    props = _props(server_properties(BrokerFiles(tmp_path), host="127.0.0.1", port=9092, controller_port=9093))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert not any("sasl" in key or "authorizer" in key for key in props)


def test_auth_broker_properties(tmp_path: Path) -> None:
    credentials = load_or_create_credentials(tmp_path / "credentials.json")
    text = server_properties(BrokerFiles(tmp_path), host="127.0.0.1", port=9096, controller_port=9097, auth=credentials)
    props = _props(text)
    assert props["listeners"] == "SASL://127.0.0.1:9096,CONTROLLER://127.0.0.1:9097"
    assert props["advertised.listeners"] == "SASL://127.0.0.1:9096"
    assert props["inter.broker.listener.name"] == "SASL"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SASL_PLAINTEXT,SASL:SASL_PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["super.users"] == "User:admin"  # the broker's own user only: nobody anonymous
    assert props["allow.everyone.if.no.acl.found"] == "false"
    jaas = props["listener.name.sasl.scram-sha-512.sasl.jaas.config"]
    assert 'username="admin"' in jaas and f'password="{credentials.password("admin")}"' in jaas
    controller = props["listener.name.controller.plain.sasl.jaas.config"]
    assert f'user_admin="{credentials.controller_password}"' in controller
    for user in ("worker", "publisher", "subscriber"):  # components' passwords live in the metadata log only
        assert credentials.password(user) not in text


def test_scram_users_are_stored_at_format_time(tmp_path: Path) -> None:
    credentials = load_or_create_credentials(tmp_path / "credentials.json")
    args = credentials.scram_arguments()
    assert args[0::2] == ["--add-scram"] * len(USERS)
    assert f"SCRAM-SHA-512=[name=worker,password={credentials.password('worker')}]" in args[1::2]


def _allowed(rules: list[AclBinding], user: str) -> set[tuple[str, str, str, str]]:
    return {(r.resource.name, r.pattern.name, r.name, r.operation.name) for r in rules if r.user == user}


def test_component_acls_grant_each_component_only_its_part() -> None:
    rules = component_acls("memstream.", "memstream", exactly_once=False)
    assert _allowed(rules, "publisher") == {
        ("TOPIC", "LITERAL", topic, op)
        for topic in ("memstream.interactions", "memstream.feedback")
        for op in ("WRITE", "DESCRIBE")
    }
    worker = _allowed(rules, "worker")
    for prefix in ("memstream.", "memstream-"):
        assert {op for kind, pattern, name, op in worker if (kind, pattern, name) == ("TOPIC", "PREFIXED", prefix)} == {
            "READ",
            "WRITE",
            "CREATE",
            "DESCRIBE",
        }
    assert ("GROUP", "LITERAL", "memstream", "READ") in worker
    assert not any(kind == "TRANSACTIONAL_ID" for kind, *_ in worker)
    assert ("TOPIC", "LITERAL", "memstream.memory-updates", "READ") in _allowed(rules, "subscriber")
    assert not any(op in ("WRITE", "CREATE") for *_, op in _allowed(rules, "subscriber"))
    assert not any(r.user == "admin" for r in rules)  # a super user
    assert not any(r.operation in (Operation.DELETE, Operation.ALTER) for r in rules)
    assert not any(r.resource is ResourceType.CLUSTER for r in rules)


def test_exactly_once_adds_the_workers_transactional_ids() -> None:
    extra = set(component_acls(exactly_once=True)) - set(component_acls(exactly_once=False))
    assert {(r.user, r.resource, r.pattern, r.name) for r in extra} == {
        ("worker", ResourceType.TRANSACTIONAL_ID, PatternType.PREFIXED, "memstream-")
    }


def test_an_empty_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        component_acls("", "memstream")


def test_auth_broker_has_its_own_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMSTREAM_KAFKA_AUTH_PORT", raising=False)
    monkeypatch.delenv("MEMSTREAM_KAFKA_AUTH_DATA_DIR", raising=False)
    monkeypatch.setenv("MEMSTREAM_KAFKA_PORT", "9092")
    monkeypatch.setenv("MEMSTREAM_KAFKA_CONTROLLER_PORT", "9093")
    assert default_port(auth=True) == 9096 and default_data_dir(auth=True) != default_data_dir()
    broker = LocalKafka(auth=True, progress=False)
    assert (broker.port, broker.controller_port) == (9096, 9097)  # never the plain broker's 9092/9093
    monkeypatch.setenv("MEMSTREAM_KAFKA_AUTH_PORT", "19096")
    assert LocalKafka(auth=True, progress=False).port == 19096


def test_a_data_dir_keeps_its_mode(tmp_path: Path) -> None:
    plain = LocalKafka(tmp_path / "plain", port=1, controller_port=2, progress=False)
    plain.files.meta_properties.parent.mkdir(parents=True)
    plain.files.meta_properties.write_text("cluster.id=x\n")
    with pytest.raises(KafkaStartError, match="formatted without --auth"):
        LocalKafka(plain.data_dir, port=1, controller_port=2, progress=False, auth=True)._check_mode()
    secured = LocalKafka(tmp_path / "auth", port=1, controller_port=2, progress=False, auth=True)
    load_or_create_credentials(secured.files.credentials_file)
    with pytest.raises(KafkaStartError, match="run `up --auth`"):
        LocalKafka(secured.data_dir, port=1, controller_port=2, progress=False)._check_mode()
