"""``memstream eval compensation``: ReLoop2 error compensation, base vs kNN vs sketch, on a replay."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from memstream.cli.source_tree import bench_module

__all__ = ["eval_compensation"]


def eval_compensation(
    input: Path | None = typer.Option(
        None,
        "--input",
        help="CSV/JSONL with user_id, item_id, timestamp, label (+ f_* features); "
        "default: MovieLens-100K from the recbole wheel, label = rating >= 4.",
        exists=True,
        dir_okay=False,
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the full result as JSON on stdout."),
) -> None:
    """Train a base model on the first half (by time), replay the rest compensating from the error memory."""
    result = bench_module("eval_compensation", extra="eval").run(input)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"error compensation — {result['dataset']}")
    table.add_column("predictor")
    table.add_column("AUC", justify="right")
    table.add_column("logloss", justify="right")
    for name, label in (
        ("base", "base model"),
        ("knn", "+ kNN memory"),
        ("sketch", "+ RACE sketch"),
        ("lambda0", "λ = 0 (must equal base)"),
    ):
        table.add_row(label, f"{result['auc_' + name]:.4f}", f"{result['logloss_' + name]:.4f}")
    console = Console()
    console.print(table)
    console.print(
        f"test rows {result['n_test']:,} ({result['test_rows_with_unseen_user']:.0%} from users unseen in "
        f"training); AUC gain kNN {result['auc_gain_knn_points']:+.2f} pts, sketch "
        f"{result['auc_gain_sketch_points']:+.2f} pts; λ=0 identical to base: {result['lambda0_equals_base']}; "
        f"{result['seconds']:.1f} s"
    )


if __name__ == "__main__":
    typer.run(eval_compensation)
