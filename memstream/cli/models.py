"""`memstream models …`: build the ONNX graphs into the cache ahead of time (e.g. in a container image)."""

from __future__ import annotations

import typer

app = typer.Typer(help="ONNX models built from registry-shipped weights.", no_args_is_help=True)


@app.callback()
def models() -> None:
    """ONNX models built from registry-shipped weights."""


@app.command("build")
def build(
    variant: list[str] | None = typer.Option(None, "--variant", "-v", help="fp32 and/or int8 (default: both)"),
    force: bool = typer.Option(False, "--force", help="rebuild even when the cached graph is current"),
    lm: bool = typer.Option(
        False, "--lm", help="also build the causal LM's NLL graphs (SmolLM2-135M, for LM surprise)"
    ),
    lm_variant: list[str] | None = typer.Option(
        None, "--lm-variant", help="fp32 and/or q8 (default: both); implies --lm"
    ),
) -> None:
    """Build (or verify) the embedder's ONNX graphs in the memstream cache (and the LM's, with --lm)."""
    import logging

    from memstream.models.embedder import VARIANTS, build_models

    chosen = variant or list(VARIANTS)
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise typer.BadParameter(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    lm_chosen: list[str] = []
    if lm or lm_variant:
        from memstream.models.language_model import VARIANTS as LM_VARIANTS

        lm_chosen = lm_variant or list(LM_VARIANTS)
        unknown = [v for v in lm_chosen if v not in LM_VARIANTS]
        if unknown:
            raise typer.BadParameter(f"unknown LM variant(s) {unknown}; choose from {list(LM_VARIANTS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, path in build_models(chosen, force=force).items():
        typer.echo(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if lm_chosen:
        from memstream.models.language_model import build_lms

        for name, path in build_lms(lm_chosen, force=force).items():
            typer.echo(f"lm {name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    app()
