"""The `memstream` command line."""

from __future__ import annotations

import typer

from streams.cli import core

app = typer.Typer(help="memstream: streaming memory for AI agents and recommenders.", no_args_is_help=True)
app.command("worker")(core.worker)
app.command("publish")(core.publish)
app.command("tail")(core.tail)
app.command("topics")(core.topics)


def main() -> None:
    app()
