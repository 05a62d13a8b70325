"""``memstream eval recall``: evidence recall at a budget of returned events (bench.eval_recall)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from memstream.cli.source_tree import bench_module


def eval_recall(
    input: Path = typer.Option(
        Path("../shared/data/locomo-dev.jsonl"),
        "--input",
        help="JSONL of type=event and type=question records (LoCoMo format, see ../shared/data/README.md)",
        exists=True,
        dir_okay=False,
    ),
    budgets: str = typer.Option("5,10,20,50", "--budgets", help="comma-separated budgets B (events returned)"),
    through_kafka: bool = typer.Option(
        False,
        "--through-kafka",
        help="publish to the broker (MEMSTREAM_KAFKA__BOOTSTRAP), run a worker, ask its "
        "HTTP API: the end-to-end number (several minutes)",
    ),
    json_out: bool = typer.Option(False, "--json", help="print the full result as JSON"),
) -> None:
    """Recall of the questions' evidence among the first B events: memstream against dense, BM25 and RRF."""
    run = bench_module("eval_recall", extra="eval").run
    try:
        chosen = [int(b) for b in budgets.split(",") if b.strip()]
        result = run(input, chosen, through_kafka=through_kafka)
    except ValueError as exc:
        typer.echo(f"eval recall: {exc}", err=True)
        raise typer.Exit(2) from exc
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    data = result["data"]
    typer.echo(f"{data['events']} events, {data['questions']} questions; evidence recall at B events returned")
    shown = list(next(iter(result["recall"].values())))
    typer.echo(f"{'method':<22}" + "".join(f"{'B=' + b:>9}" for b in shown))
    for method, values in result["recall"].items():
        typer.echo(f"{method:<22}" + "".join(f"{values[b]:>9.3f}" for b in shown))
    latency = result["latency_ms"]
    typer.echo(f"memstream recall latency p50 {latency['p50']} ms, p95 {latency['p95']} ms ({latency['what']})")


if __name__ == "__main__":
    typer.run(eval_recall)
