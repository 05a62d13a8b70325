"""The `memstream` command line."""

from __future__ import annotations

import typer

from streams.cli import core, demo, kafka

app = typer.Typer(help="memstream: streaming memory for AI agents and recommenders.", no_args_is_help=True)
app.command("worker")(core.worker)
app.command("publish")(core.publish)
app.command("tail")(core.tail)
app.command("topics")(core.topics)
app.command("demo")(demo.demo)
app.add_typer(kafka.app, name="kafka", help="Local Apache Kafka (KRaft, one node) from Maven Central.")


def main() -> None:
    app()
