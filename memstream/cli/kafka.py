"""``memstream kafka up|down|status``: a local single-node Apache Kafka 4.x broker for development and tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from memstream.deploy.kafka import KafkaLocalError, LocalKafka

app = typer.Typer(help="Run a local Apache Kafka 4.x broker (KRaft, one node, jars from Maven Central).")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="MEMSTREAM_KAFKA_DATA_DIR", help="Broker data dir (default: <cache>/kafka-data)"),
]
Port = Annotated[int | None, typer.Option("--port", envvar="MEMSTREAM_KAFKA_PORT", help="Broker port (default: 9092)")]
ControllerPort = Annotated[
    int | None,
    typer.Option(
        "--controller-port", envvar="MEMSTREAM_KAFKA_CONTROLLER_PORT", help="KRaft controller port (default: port + 1)"
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output")]


def _kafka(data_dir: Path | None, port: int | None, controller_port: int | None, quiet: bool = False) -> LocalKafka:
    return LocalKafka(data_dir, port, controller_port, progress=not quiet)


@app.command()
def up(
    data_dir: DataDir = None,
    port: Port = None,
    controller_port: ControllerPort = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait until the broker answers")] = 90.0,
    quiet: Quiet = False,
) -> None:
    """Start the broker in the background (no-op if running) and print its bootstrap address."""
    try:
        typer.echo(_kafka(data_dir, port, controller_port, quiet).up(timeout=timeout))
    except KafkaLocalError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def down(
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait after SIGTERM before SIGKILL")] = 30.0,
    quiet: Quiet = False,
) -> None:
    """Stop the broker gracefully."""
    _kafka(data_dir, None, None, quiet).down(timeout=timeout)


@app.command()
def status(
    data_dir: DataDir = None,
    port: Port = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Print running/not, pid, version and bootstrap address (exit 3 when not running)."""
    info = _kafka(data_dir, port, None, quiet=True).status()
    typer.echo(json.dumps(info.as_dict()) if as_json else "\n".join(info.lines()))
    if not info.running:
        raise typer.Exit(3)


if __name__ == "__main__":
    app()
