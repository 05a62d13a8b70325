"""`memstream models …`: build the ONNX graphs into the cache ahead of time (e.g. in a container image)."""

from __future__ import annotations

from typing import List, Optional

import typer

app = typer.Typer(help="ONNX models built from registry-shipped weights.", no_args_is_help=True)


@app.callback()
def models() -> None:
    """ONNX models built from registry-shipped weights."""


@app.command("build")
def build(
    variant: Optional[List[str]] = typer.Option(None, "--variant", "-v", help="fp32 and/or int8 (default: both)"),
    force: bool = typer.Option(False, "--force", help="rebuild even when the cached graph is current"),
) -> None:
    """Build (or verify) the embedder's ONNX graphs in the memstream cache."""
    import logging

    from models.embedder import VARIANTS, build_models

    chosen = variant or list(VARIANTS)
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise typer.BadParameter(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, path in build_models(chosen, force=force).items():
        typer.echo(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    app()
