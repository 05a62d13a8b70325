"""`memstream bench embed`: embedding throughput and quality. The command itself lives in bench/embed.py (so
``python -m bench.embed`` also runs it from an environment without the rest of memstream); this one forwards
its arguments there, ``--help`` included."""

from __future__ import annotations

import typer

from memstream.cli.source_tree import bench_module

SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def bench_embed(ctx: typer.Context) -> None:
    """Benchmark the ONNX embedder (fp32, int8) against sentence-transformers, engines interleaved, with the
    machine's load beside each figure (options: --help)."""
    command = typer.Typer(add_completion=False)
    command.command()(bench_module("embed").bench_embed)
    command(args=ctx.args, prog_name="memstream bench embed")
