"""`memstream bench …`: benchmarks with JSON output (ratios against an anchor measured in the same run)."""

from __future__ import annotations

import sys

import orjson
import typer

from memstream.cli.source_tree import bench_module

app = typer.Typer(help="Benchmarks (JSON with --json).", no_args_is_help=True)


@app.command("pipeline")
def bench_pipeline(
    events: int = typer.Option(4000, min=100, help="Events published per measured run."),
    sessions: int = typer.Option(50, min=1, help="Sessions the events are spread over."),
    partitions: int = typer.Option(4, min=1, help="Partitions of every topic."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Publish → indexed throughput (1 and 2 workers), latency at half the max rate, vs the embedder alone."""
    result = bench_module("pipeline").run(events, sessions, partitions)
    if json_out:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        for key, value in result.items():
            if key != "runs":
                typer.echo(f"{key:>20}: {value}")
