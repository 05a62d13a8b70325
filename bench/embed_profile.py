"""Where the embedder's time goes: onnxruntime's profiler per operator type, per variant and batch size, and
what onnxruntime's own transformer optimizer (attention / LayerNorm / GELU fusions) does to the built graph.

Shares are of the summed kernel time of one pass over the sentences (after a warm-up pass), so they hardly
depend on the machine's load; the optimizer comparison is a speed ratio and wants a quiet machine.

    PYTHONPATH=. .venv/bin/python -m bench.embed_profile --json --out result.json
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer

from bench.corpus import wiki_sentences
from memstream.models.onnx_cache import available_cpus


def _session(path: str, profile_prefix: str | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = available_cpus()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _feeds(sentences: list[str], batch: int) -> list[dict[str, Any]]:
    from memstream.models.embedder import _encode, _load_tokenizer

    tokenizer = _load_tokenizer(256)
    ordered = sorted(sentences, key=len)  # as the embedder sorts a call by length
    return [_encode(tokenizer, ordered[i : i + batch]) for i in range(0, len(ordered), batch)]


def operator_shares(path: str, feeds: list[dict[str, Any]]) -> dict[str, float]:
    """Share of kernel time per operator type over one profiled pass (after one warm-up pass)."""
    with tempfile.TemporaryDirectory() as tmp:
        session = _session(path, str(Path(tmp) / "profile"))
        for feed in feeds:
            session.run(None, feed)
        trace = json.loads(Path(session.end_profiling()).read_text())
    totals: Counter[str] = Counter()
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    # the first pass includes one-off costs: drop nothing, but report shares of the whole
    whole = sum(totals.values()) or 1
    return {op: round(t / whole, 4) for op, t in totals.most_common()}


def _rates(paths: list[str], feeds: list[dict[str, Any]], sentences: int, repeats: int = 5) -> list[list[float]]:
    """Sentences/s of each graph, interleaved: every repetition runs each graph once, in rotated order."""
    sessions = [_session(path) for path in paths]
    for session in sessions:
        for feed in feeds[:2]:
            session.run(None, feed)
    rates: list[list[float]] = [[] for _ in paths]
    for rep in range(repeats):
        for i in [*range(rep % len(paths), len(paths)), *range(rep % len(paths))]:
            started = time.perf_counter()
            for feed in feeds:
                sessions[i].run(None, feed)
            rates[i].append(sentences / (time.perf_counter() - started))
    return rates


def transformer_optimizer(path: str, out: Path) -> str | None:
    """onnxruntime.transformers' BERT optimizer on the built graph; returns why it could not run, if so."""
    try:
        from onnxruntime.transformers import optimizer
    except ImportError as exc:  # needs the `onnx` package and onnxruntime's transformers tools
        return f"onnxruntime.transformers not importable ({exc})"
    # opt_level 0: the optimizer's own Python fusions only (its onnxruntime pass imports torch); the session
    # then applies onnxruntime's graph optimisations as it does to the built graph.
    try:
        optimized = optimizer.optimize_model(path, model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
    except ImportError as exc:  # its shape inference needs sympy (the [anchor] extra's torch brings it)
        return f"onnxruntime.transformers optimizer unavailable here ({exc})"
    optimized.save_model_to_file(str(out))
    fused = {op: count for op, count in optimized.get_fused_operator_statistics().items() if count}
    out.with_suffix(".json").write_text(json.dumps(fused))
    return None


def run(n: int = 640, batch_sizes: tuple[int, ...] = (1, 32, 128)) -> dict[str, Any]:
    from memstream.models.embedder import ensure_model

    sentences = wiki_sentences(n)
    report: dict[str, Any] = {"sentences": n, "threads": available_cpus(), "variants": {}}
    for variant in ("fp32", "int8"):
        path = str(ensure_model(variant))
        report["variants"][variant] = {
            str(batch): operator_shares(path, _feeds(sentences, batch)) for batch in batch_sizes
        }
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = str(ensure_model("fp32"))
        target = Path(tmp) / "optimized.onnx"
        why = transformer_optimizer(fp32, target)
        if why is None:
            feeds = _feeds(sentences, 32)
            built, optimized = _rates([fp32, str(target)], feeds, n)
            per_rep = sorted(o / b for o, b in zip(optimized, built))
            report["transformer_optimizer"] = {
                "batch": 32,
                "built_per_s": round(sorted(built)[len(built) // 2], 1),
                "optimized_per_s": round(sorted(optimized)[len(optimized) // 2], 1),
                "ratio": {
                    "median": round(per_rep[len(per_rep) // 2], 3),
                    "min": round(per_rep[0], 3),
                    "max": round(per_rep[-1], 3),
                },
                "fusions_applied": json.loads(target.with_suffix(".json").read_text()),
                "operator_shares": operator_shares(str(target), feeds),
            }
        else:
            report["transformer_optimizer"] = {"skipped": why}
    return report


def bench_embed_profile(
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
    sentences: int = typer.Option(640, "--sentences", "-n", min=32),
    out: Path | None = typer.Option(None, "--out", help="also write the JSON report to this file"),
) -> None:
    """Profile the embedder's graphs per operator type and try onnxruntime's transformer optimizer."""
    report = run(n=sentences)
    text = json.dumps(report, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    if json_out:
        typer.echo(text)
        return
    for variant, by_batch in report["variants"].items():
        for batch, shares in by_batch.items():
            top = ", ".join(f"{op} {share:.0%}" for op, share in list(shares.items())[:5])
            typer.echo(f"{variant} batch {batch}: {top}")
    typer.echo(f"transformer optimizer: {report['transformer_optimizer']}")


if __name__ == "__main__":
    typer.run(bench_embed_profile)
