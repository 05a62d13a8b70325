"""`memstream bench embed`: embedding throughput and quality (the command lives in bench/embed.py, so
``python -m bench.embed`` also runs it from an environment without the rest of memstream)."""

from __future__ import annotations

import typer

from bench.embed import bench_embed

__all__ = ["bench_embed"]

if __name__ == "__main__":
    typer.run(bench_embed)
