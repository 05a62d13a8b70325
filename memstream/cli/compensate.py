"""``memstream compensate``: ask a running worker's ``POST /compensate/`` to correct a base prediction.

One query from the options, or many from a JSON Lines file of CompensateRequest objects (sent as one
batch, so their texts are embedded together):

    python -m memstream.cli.compensate --tenant acme --user alice --model-version v1 --y-base 0.2 \\
        --text "a starship lost near a black hole"
    python -m memstream.cli.compensate --queries queries.jsonl --json
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from memstream.cli.worker_api import worker_errors
from memstream.streams.memory_client import MemoryClient
from memstream.streams.settings import client_settings

__all__ = ["compensate_cmd"]

err = Console(stderr=True)


def _vector(raw: str | None) -> list[float] | None:
    if raw is None:
        return None
    try:
        values = orjson.loads(raw) if raw.lstrip().startswith("[") else [float(x) for x in raw.split(",") if x.strip()]
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise typer.BadParameter(f"--vector must be a JSON array or comma-separated numbers: {exc}") from None
    return values


def _print(results: list[dict[str, Any]]) -> None:
    table = Table()
    for column in ("user", "y_base", "y", "y_err", "support", "backend"):
        table.add_column(column, justify="left" if column in ("user", "backend") else "right")
    for r in results:
        table.add_row(
            r.get("user_id", ""),
            f"{r['y_base']:.4f}",
            f"{r['y']:.4f}",
            f"{r['y_err']:+.4f}",
            f"{r['support']:.2f}",
            r["backend"],
        )
    Console().print(table)


def compensate_cmd(
    tenant: str | None = typer.Option(None, "--tenant", help="Tenant of the query."),
    user: str | None = typer.Option(None, "--user", help="User the prediction is for."),
    model_version: str | None = typer.Option(None, "--model-version", help="Version of the model that predicted."),
    y_base: float | None = typer.Option(None, "--y-base", min=0.0, max=1.0, help="The base model's prediction."),
    text: str | None = typer.Option(None, "--text", help="Text features (embedded by the worker)."),
    vector: str | None = typer.Option(None, "--vector", help="Numeric features: JSON array or 1,2,3."),
    backend: str | None = typer.Option(None, "--backend", help="knn or sketch (default: the worker's setting)."),
    queries: Path | None = typer.Option(
        None, "--queries", exists=True, dir_okay=False, help="JSON Lines of CompensateRequest objects (one batch)."
    ),
    worker: str = typer.Option(
        client_settings().api.url, "--worker", help="Base URL of a worker's HTTP API (MEMSTREAM_API__URL)."
    ),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds to wait for the answer."),
    json_out: bool = typer.Option(False, "--json", help="Print the worker's JSON answer."),
) -> None:
    """Compensate a base prediction with the error memory of a running worker."""
    ask: Callable[[MemoryClient], list[dict[str, Any]]]
    if queries is not None:
        lines = [line for line in queries.read_bytes().splitlines() if line.strip()]
        try:
            batch = [orjson.loads(line) for line in lines]
        except orjson.JSONDecodeError as exc:
            raise typer.BadParameter(f"{queries}: not JSON Lines: {exc}") from None
        ask = lambda memory: memory.compensate_many(batch)  # noqa: E731
        users = [q.get("user_id", "") if isinstance(q, dict) else "" for q in batch]
    else:
        missing = [
            name
            for name, value in (
                ("--tenant", tenant),
                ("--user", user),
                ("--model-version", model_version),
                ("--y-base", y_base),
            )
            if value is None
        ]
        if missing or (text is None and vector is None):
            raise typer.BadParameter(
                f"give {', '.join(missing) or 'features'} (and --text and/or --vector), or --queries FILE"
            )
        body = {
            "tenant_id": tenant,
            "user_id": user,
            "model_version": model_version,
            "y_base": y_base,
            "features": {"text": text, "vector": _vector(vector)},
            "backend": backend,
        }
        ask = lambda memory: [memory.compensate(**body)]  # noqa: E731
        users = [user or ""]
    with worker_errors(worker), MemoryClient(worker, timeout_s=timeout) as memory:
        results = ask(memory)
    if json_out:
        sys.stdout.write(orjson.dumps(results if queries is not None else results[0]).decode() + "\n")
    else:
        _print([{**r, "user_id": u} for r, u in zip(results, users)])


if __name__ == "__main__":
    typer.run(compensate_cmd)
