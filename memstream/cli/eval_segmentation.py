"""``memstream eval segmentation``: episodic segmentation quality against baselines (bench.eval_segmentation)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from memstream.cli.source_tree import bench_module


def eval_segmentation(
    input: Path | None = typer.Option(
        None,
        "--input",
        help='JSONL of {"stream", "text", "boundary"} records; default: the Wikipedia dev set',
        exists=True,
        dir_okay=False,
    ),
    json_out: bool = typer.Option(False, "--json", help="print the full result as JSON"),
    lm: bool = typer.Option(
        False, "--lm", help="add LM and blend surprise (SmolLM2-135M; ~1 h for the whole dev set on 2 cores, cached)"
    ),
    lm_variant: str = typer.Option(
        "auto",
        "--lm-variant",
        help="with --lm: the LM variant (auto, fp32, q8); fp32 reuses surprises computed on a GPU by bench.lm_cuda",
    ),
    streams: int | None = typer.Option(None, "--streams", min=1, help="evaluate the first N streams only"),
) -> None:
    """Segment streams with memstream's streaming segmenter and baselines; print F1, Pk and WindowDiff."""
    run = bench_module("eval_segmentation", extra="eval").run

    model = False
    if lm:
        from memstream.models.language_model import LanguageModel, LanguageModelConfig

        model = LanguageModel(LanguageModelConfig(variant=lm_variant))
    result = run(input, lm=model, max_streams=streams)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    data = result["data"]
    typer.echo(
        f"{data['streams']} streams, {data['records']} records, {data['gold_boundaries']} gold boundaries "
        f"(F1 tolerance ±{data['tolerance']}; lower Pk/WindowDiff is better)"
    )
    cost = result.get("cost_ms_per_event", {})
    typer.echo(f"{'method':<22}{'F1':>8}{'Pk':>8}{'WinDiff':>9}{'bounds':>8}{'ms/event':>10}")
    for method in result["f1"]:
        ms = f"{cost[method]:>10.2f}" if method in cost else f"{'':>10}"
        typer.echo(
            f"{method:<22}{result['f1'][method]:>8.3f}{result['pk'][method]:>8.3f}"
            f"{result['windowdiff'][method]:>9.3f}{result['boundaries'][method]:>8d}{ms}"
        )


if __name__ == "__main__":
    typer.run(eval_segmentation)
