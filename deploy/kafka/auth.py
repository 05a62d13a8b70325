"""SASL/SCRAM credentials and ACLs of the local broker started with ``memstream kafka up --auth``.

The broker's client listener is SASL_PLAINTEXT with SCRAM-SHA-512; the KRaft controller listener (loopback)
is SASL_PLAINTEXT with PLAIN and one static user, so nothing reaches the controller without a password
either. Kafka's StandardAuthorizer denies whatever no ACL allows. Users (random passwords, generated once per
data dir, kept in ``credentials.json`` with mode 0600):

- ``admin``: the broker's own user (``super.users``), used by the broker itself and for administration;
- ``worker``, ``publisher``, ``subscriber``: the memstream components, with the ACLs of
  :func:`component_acls` only.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memstream.deploy.kafka.errors import KafkaStartError
from memstream.streams.topics import TopicNames

MECHANISM = "SCRAM-SHA-512"
PROTOCOL = "SASL_PLAINTEXT"
ADMIN = "admin"
USERS = (ADMIN, "worker", "publisher", "subscriber")
"""Every SCRAM user of an --auth broker; the components' ACLs are in :func:`component_acls`."""


class ResourceType(enum.IntEnum):
    """Kafka's ACL resource types (wire codes of ``org.apache.kafka.common.resource.ResourceType``)."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(enum.IntEnum):
    """How a binding's resource name matches (``org.apache.kafka.common.resource.PatternType``)."""

    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):
    """ACL operations (``org.apache.kafka.common.acl.AclOperation``)."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8


ALLOW = 3  # AclPermissionType.ALLOW


@dataclass(frozen=True)
class AclBinding:
    """One ALLOW rule: `user` may do `operation` on the resource (from any host)."""

    user: str
    resource: ResourceType
    name: str
    pattern: PatternType
    operation: Operation

    @property
    def principal(self) -> str:
        return f"User:{self.user}"

    def __str__(self) -> str:
        match = "prefix" if self.pattern is PatternType.PREFIXED else "name"
        return f"{self.principal} {self.operation.name} {self.resource.name} {match} {self.name!r}"


def component_acls(
    topic_prefix: str = "memstream.",
    app_id: str = "memstream",
    *,
    worker: str = "worker",
    publisher: str = "publisher",
    subscriber: str = "subscriber",
    exactly_once: bool = True,
) -> list[AclBinding]:
    """The ACLs each memstream component needs in one deployment (one topic prefix, one worker app id).

    - publisher: WRITE and DESCRIBE on the interactions and feedback topics (DESCRIBE: the producer's
      metadata; WRITE also allows its idempotent producer id, KIP-679);
    - worker: READ, WRITE, CREATE, DESCRIBE on every topic of the prefix (it creates them at start, reads its
      inputs, writes its outputs and dead letters) and on the Faust app's own topics, which start with
      ``<app_id>-`` (table changelogs, the assignor's leader topic); READ and DESCRIBE on its consumer group
      (= app id); with ``exactly_once``, WRITE and DESCRIBE on the transactional ids Faust uses
      (``<app_id>-<group>-<partition>``);
    - subscriber: READ and DESCRIBE on memory-updates (``subscribe()`` reads without a consumer group), and
      READ on consumer groups named ``<prefix>subscriber…`` for subscribers that commit offsets.
    """
    if not topic_prefix or not app_id:
        raise ValueError("ACLs need a non-empty topic prefix and app id (an empty prefix would match everything)")
    topics = TopicNames(topic_prefix)
    T, G, X = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    lit, pre = PatternType.LITERAL, PatternType.PREFIXED
    op = Operation
    rules: list[AclBinding] = []
    for topic in (topics.interactions, topics.feedback):
        rules += [AclBinding(publisher, T, topic, lit, o) for o in (op.WRITE, op.DESCRIBE)]
    for prefix in (topic_prefix, f"{app_id}-"):
        rules += [AclBinding(worker, T, prefix, pre, o) for o in (op.READ, op.WRITE, op.CREATE, op.DESCRIBE)]
    rules += [AclBinding(worker, G, app_id, lit, o) for o in (op.READ, op.DESCRIBE)]
    if exactly_once:
        rules += [AclBinding(worker, X, f"{app_id}-", pre, o) for o in (op.WRITE, op.DESCRIBE)]
    rules += [AclBinding(subscriber, T, topics.memory_updates, lit, o) for o in (op.READ, op.DESCRIBE)]
    rules.append(AclBinding(subscriber, G, f"{topic_prefix}subscriber", pre, op.READ))
    return rules


@dataclass(frozen=True)
class Credentials:
    """Passwords of the SCRAM users and of the controller listener's one PLAIN user."""

    passwords: dict[str, str]
    controller_password: str

    def password(self, user: str) -> str:
        try:
            return self.passwords[user]
        except KeyError:
            raise KeyError(f"no user {user!r}; the users are {', '.join(sorted(self.passwords))}") from None

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that store every user's SCRAM credential (KIP-900)."""
        args: list[str] = []
        for user, password in self.passwords.items():
            args += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
        return args

    def client_kwargs(self, bootstrap: str, user: str = ADMIN) -> dict[str, Any]:
        """aiokafka keyword arguments of `user`."""
        return {
            "bootstrap_servers": bootstrap,
            "security_protocol": PROTOCOL,
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": user,
            "sasl_plain_password": self.password(user),
        }

    def env(self, bootstrap: str, user: str) -> dict[str, str]:
        """The ``MEMSTREAM_KAFKA__*`` variables a memstream process runs with as `user`."""
        return {
            "MEMSTREAM_KAFKA__BOOTSTRAP": bootstrap,
            "MEMSTREAM_KAFKA__SECURITY_PROTOCOL": PROTOCOL,
            "MEMSTREAM_KAFKA__SASL_MECHANISM": MECHANISM,
            "MEMSTREAM_KAFKA__SASL_USERNAME": user,
            "MEMSTREAM_KAFKA__SASL_PASSWORD": self.password(user),
        }


def _new_password() -> str:
    return secrets.token_urlsafe(24)  # URL-safe: no characters that need quoting in JAAS or shell


def load_or_create_credentials(path: Path) -> Credentials:
    """The data dir's credentials: read `path`, or generate random ones and write them there (mode 0600).

    Raises KafkaStartError when the file is readable by others (fix: ``chmod 600``) or malformed."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KafkaStartError(f"{path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")
        try:
            data = json.loads(path.read_text())
            return Credentials(
                passwords={u: str(data["users"][u]) for u in USERS}, controller_password=str(data["controller"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise KafkaStartError(f"{path} is not a memstream credentials file ({exc!r}); delete the data dir") from exc
    credentials = Credentials(passwords={u: _new_password() for u in USERS}, controller_password=_new_password())
    data = {
        "mechanism": MECHANISM,
        "security_protocol": PROTOCOL,
        "users": credentials.passwords,
        "controller": credentials.controller_password,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    return credentials


def jaas(module: str, **options: str) -> str:
    """A one-line JAAS configuration (the ``sasl.jaas.config`` value)."""
    return f"{module} required " + " ".join(f'{key}="{value}"' for key, value in options.items()) + ";"


def auth_properties(credentials: Credentials, *, client_listener: str, controller_listener: str) -> dict[str, str]:
    """server.properties entries of the --auth broker (beyond listeners and the protocol map)."""
    admin = credentials.password(ADMIN)
    controller = credentials.controller_password
    client, ctl = client_listener.lower(), controller_listener.lower()
    return {
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.{client}.sasl.enabled.mechanisms": MECHANISM,
        f"listener.name.{client}.{MECHANISM.lower()}.sasl.jaas.config": jaas(
            "org.apache.kafka.common.security.scram.ScramLoginModule", username=ADMIN, password=admin
        ),
        # SCRAM credentials live in the metadata log, which the controller serves: its own listener uses PLAIN
        # with one static user, the broker's (and controller's) own.
        "sasl.mechanism.controller.protocol": "PLAIN",
        f"listener.name.{ctl}.sasl.enabled.mechanisms": "PLAIN",
        f"listener.name.{ctl}.plain.sasl.jaas.config": jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule",
            username=ADMIN,
            password=controller,
            **{f"user_{ADMIN}": controller},
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }


async def create_acls(client_kwargs: dict[str, Any], bindings: Sequence[AclBinding], timeout: float = 30.0) -> None:
    """Create `bindings` on the broker (as a super user); existing ones are left as they are.

    aiokafka's admin client has no ACL call, so this sends Kafka's CreateAcls request (v1) itself."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.admin import CreateAclsRequest

    client = AIOKafkaClient(**client_kwargs, client_id="memstream-kafka-acls")
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        failed: list[str] = []
        for rule in bindings:
            request = CreateAclsRequest(
                int(rule.resource), rule.name, int(rule.pattern), rule.principal, "*", int(rule.operation), ALLOW
            )
            response = await asyncio.wait_for(client.send(client.get_random_node(), request), timeout)
            for code, message in response.creation_responses:
                if code:
                    failed.append(f"{rule}: error {code} {message or ''}".strip())
        if failed:
            raise KafkaStartError("the broker refused these ACLs:\n" + "\n".join(failed))
    finally:
        await client.close()
