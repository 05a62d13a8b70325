"""``memstream kafka up|down|status|env``: a local single-node Apache Kafka 4.x broker for development and tests.

``--auth`` runs a second broker beside the plain one (own data dir, port 9096): SASL_PLAINTEXT with
SCRAM-SHA-512 and ACLs per component (see memstream.deploy.kafka.auth).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

from memstream.deploy.kafka import KafkaLocalError, LocalKafka
from memstream.deploy.kafka.auth import USERS
from memstream.deploy.kafka.config import default_data_dir

app = typer.Typer(help="Run a local Apache Kafka 4.x broker (KRaft, one node, jars from Maven Central).")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Broker data dir (default: MEMSTREAM_KAFKA_DATA_DIR or <cache>/kafka-data; with --auth "
        "MEMSTREAM_KAFKA_AUTH_DATA_DIR or <cache>/kafka-auth-data)",
    ),
]
Port = Annotated[
    int | None,
    typer.Option(
        "--port",
        help="Broker port (default: MEMSTREAM_KAFKA_PORT or 9092; with --auth MEMSTREAM_KAFKA_AUTH_PORT or 9096)",
    ),
]
ControllerPort = Annotated[
    int | None,
    typer.Option(
        "--controller-port",
        help="KRaft controller port (default: MEMSTREAM_KAFKA_CONTROLLER_PORT or port + 1; with --auth port + 1)",
    ),
]
Auth = Annotated[
    bool,
    typer.Option(
        "--auth",
        help="The SASL broker: SCRAM-SHA-512 users (admin, worker, publisher, subscriber) and ACLs; its own data "
        "dir and port, so it runs beside the plain one",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output")]


def _kafka(
    data_dir: Path | None,
    port: int | None,
    controller_port: int | None,
    quiet: bool = False,
    auth: bool = False,
    **acl: str,
) -> LocalKafka:
    return LocalKafka(data_dir, port, controller_port, progress=not quiet, auth=auth, **acl)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", err=True)
    return typer.Exit(1)


def _auth_hints(kafka: LocalKafka) -> str:
    default = kafka.data_dir == default_data_dir(auth=True).expanduser().resolve()
    data_dir = "" if default else f" --data-dir {shlex.quote(str(kafka.data_dir))}"
    lines = [
        f"credentials: {kafka.files.credentials_file} (mode 0600; users {', '.join(USERS)})",
        f"ACLs: topic prefix {kafka.topic_prefix!r}, worker app id {kafka.app_id!r} (see deploy/k8s/README.md)",
        "run a component with its user's settings (MEMSTREAM_KAFKA__BOOTSTRAP, __SECURITY_PROTOCOL=SASL_PLAINTEXT,",
        "__SASL_MECHANISM=SCRAM-SHA-512, __SASL_USERNAME, __SASL_PASSWORD), e.g.:",
        f'  eval "$(memstream kafka env worker{data_dir})" && memstream worker',
        f'  eval "$(memstream kafka env publisher{data_dir})"  # Publisher(create_topics=False): it may not create',
    ]
    return "\n".join(lines)


@app.command()
def up(
    data_dir: DataDir = None,
    port: Port = None,
    controller_port: ControllerPort = None,
    auth: Auth = False,
    topic_prefix: Annotated[
        str, typer.Option(envvar="MEMSTREAM_KAFKA__TOPIC_PREFIX", help="With --auth: the prefix the ACLs grant")
    ] = "memstream.",
    app_id: Annotated[
        str, typer.Option(envvar="MEMSTREAM_WORKER__APP_ID", help="With --auth: the worker app id the ACLs grant")
    ] = "memstream",
    timeout: Annotated[float, typer.Option(help="Seconds to wait until the broker answers")] = 90.0,
    quiet: Quiet = False,
) -> None:
    """Start the broker in the background (no-op if running) and print its bootstrap address."""
    kafka = _kafka(data_dir, port, controller_port, quiet, auth, topic_prefix=topic_prefix, app_id=app_id)
    try:
        typer.echo(kafka.up(timeout=timeout))
    except KafkaLocalError as exc:
        raise _fail(exc) from exc
    if auth and not quiet:
        typer.echo(_auth_hints(kafka), err=True)


@app.command()
def down(
    data_dir: DataDir = None,
    auth: Auth = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait after SIGTERM before SIGKILL")] = 30.0,
    quiet: Quiet = False,
) -> None:
    """Stop the broker gracefully."""
    _kafka(data_dir, None, None, quiet, auth).down(timeout=timeout)


@app.command()
def status(
    data_dir: DataDir = None,
    port: Port = None,
    auth: Auth = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Print running/not, pid, version and bootstrap address (exit 3 when not running)."""
    info = _kafka(data_dir, port, None, quiet=True, auth=auth).status()
    typer.echo(json.dumps(info.as_dict()) if as_json else "\n".join(info.lines()))
    if not info.running:
        raise typer.Exit(3)


@app.command()
def env(
    user: Annotated[str, typer.Argument(help=f"One of {', '.join(USERS)}")],
    data_dir: DataDir = None,
    port: Port = None,
) -> None:
    """Print `export` lines (password included) that make memstream reach the --auth broker as USER:
    ``eval "$(memstream kafka env worker)"``."""
    kafka = _kafka(data_dir, port, None, quiet=True, auth=True)
    try:
        variables = kafka.client_env(user)
    except (KafkaLocalError, KeyError) as exc:
        raise _fail(exc) from exc
    typer.echo("\n".join(f"export {name}={shlex.quote(value)}" for name, value in variables.items()))


if __name__ == "__main__":
    app()
