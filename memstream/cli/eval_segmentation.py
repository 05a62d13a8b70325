"""``memstream eval segmentation``: episodic segmentation quality against baselines (bench.eval_segmentation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from memstream.cli.source_tree import bench_module

NAMED = ("wiki", "demo")
HISTORIES = "histories:"


def _check(inputs: list[str]) -> list[str]:
    for value in inputs:
        path = value[len(HISTORIES) :] if value.startswith(HISTORIES) else value
        if value not in NAMED and not Path(path).is_file():
            raise typer.BadParameter(
                f"{value!r} is neither a file, histories:FILE nor one of {', '.join(NAMED)}", param_hint="--input"
            )
    return inputs


def _table(result: dict[str, Any]) -> None:
    data = result["data"]
    typer.echo(
        f"{data.get('name', '')}: {data['streams']} streams, {data['records']} records, "
        f"{data['gold_boundaries']} gold boundaries (F1 tolerance ±{data['tolerance']}; lower Pk/WindowDiff is "
        "better; Pk/WD weighted by stream length, mean = per-stream average)"
    )
    cost = result.get("cost_ms_per_event", {})
    typer.echo(
        f"{'method':<20}{'F1':>7}{'F1=0':>7}{'F1±1':>7}{'Pk':>7}{'Pk mean':>8}{'WD':>7}{'WD mean':>8}"
        f"{'bounds':>8}{'ms/event':>10}"
    )
    for method in result["f1"]:
        ms = f"{cost[method]:>10.2f}" if method in cost else f"{'':>10}"
        typer.echo(
            f"{method:<20}{result['f1'][method]:>7.3f}{result['f1_exact'][method]:>7.3f}"
            f"{result['f1_tol1'][method]:>7.3f}{result['pk'][method]:>7.3f}{result['pk_mean'][method]:>8.3f}"
            f"{result['windowdiff'][method]:>7.3f}{result['windowdiff_mean'][method]:>8.3f}"
            f"{result['boundaries'][method]:>8d}{ms}"
        )


def eval_segmentation(
    inputs: list[str] = typer.Option(
        [],
        "--input",
        help='JSONL of {"stream", "text", "boundary"[, "ts", "role"]} records (or event records), or a named '
        "set: wiki (the Wikipedia dev set, the default), demo (the demo conversation), histories:FILE (chat "
        "histories built from FILE's dialogues: a new conversation after a long pause is the only gold boundary); "
        "repeat for several sets",
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
    """Segment streams with memstream's streaming segmenter and baselines; print F1, Pk and WindowDiff.

    One --input: the JSON is that set's result; several: {"datasets": {name: result}}."""
    module = bench_module("eval_segmentation", extra="eval")
    inputs = _check(inputs or ["wiki"])

    model: Any = False
    if lm:
        from memstream.models.language_model import LanguageModel, LanguageModelConfig

        model = LanguageModel(LanguageModelConfig(variant=lm_variant))
    if len(inputs) == 1:
        results = {"": module.run(inputs[0], lm=model, max_streams=streams)}
    else:
        results = module.run_many(inputs, lm=model, max_streams=streams)["datasets"]
    if json_out:
        typer.echo(json.dumps(results.get("", {"datasets": results}), indent=2))
        return
    for result in results.values():
        _table(result)


if __name__ == "__main__":
    typer.run(eval_segmentation)
