"""Token-level surprise throughput: ``LanguageModel.nll`` on real Wikipedia sentences with context.

Events are sentences of the segmentation dev set (``bench.segmentation_data``), taken evenly across
the articles; each is scored after the last ``context`` tokens of the sentences before it in the same
article, joined as the segment stage joins a session's events (events with less context than that are
skipped). For each variant (fp32, q8) and batch size (events per ``nll`` call) the
events go through ``repeats`` times after a warm-up call (the best pass counts); reported are events/s, tokens/s (all tokens run through
the model: ``<|endoftext|>`` + context + text) and text tokens/s, plus q8's NLL difference from fp32
on the same events.

    python -m bench.lm_surprise --json
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import typer

Request = tuple[list[int], list[int]]


def segmenter_requests(lm: Any, streams: Sequence[Sequence[str]], n: int, context: int) -> list[Request]:
    """``n`` (context ids, text ids) pairs built as the segment stage builds them
    (`models.surprise.LanguageModelSurprise`: earlier events joined by newlines, the last ``context``
    tokens), from events whose context is full, spread evenly over the streams."""
    from memstream.models.surprise import LanguageModelSurprise

    surprise = LanguageModelSurprise(lm, context_tokens=context)
    eligible: list[Request] = []
    for texts in streams:
        ctx: list[int] = []
        for text in texts:
            tokens = surprise.tokens(text)
            if len(ctx) == context:
                eligible.append((ctx, tokens))
            ctx = surprise.extend(ctx, tokens)
    if len(eligible) < n:
        raise ValueError(f"only {len(eligible)} events have {context} tokens of context, asked {n}")
    step = len(eligible) / n
    return [eligible[int(k * step)] for k in range(n)]


def make_events(lm: Any, n: int, context: int) -> list[Request]:
    """`segmenter_requests` over the articles of the segmentation dev set."""
    from bench.segmentation_data import load_dev_set, streams

    articles = streams(load_dev_set())
    return segmenter_requests(lm, [[r["text"] for r in records] for records in articles.values()], n, context)


def measure(lm: Any, events: Sequence[Request], batch: int, repeats: int = 1) -> tuple[list[float], list[np.ndarray]]:
    """Seconds of each of ``repeats`` passes scoring ``events`` in calls of ``batch`` events (after one
    warm-up call), and the NLLs."""
    lm.nll(list(events[:batch]))
    seconds: list[float] = []
    for _ in range(repeats):
        out: list[np.ndarray] = []
        started = time.perf_counter()
        for start in range(0, len(events), batch):
            out.extend(lm.nll(list(events[start : start + batch])))
        seconds.append(time.perf_counter() - started)
    return seconds, out


def run(
    *,
    events: int = 64,
    context: int = 128,
    batch_sizes: Sequence[int] = (1, 16),
    variants: Sequence[str] = ("fp32", "q8"),
    threads: int | None = None,
    max_batch_tokens: int = 2048,
    repeats: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure every (variant, batch size); returns the JSON-able report."""
    import onnxruntime

    from memstream.models.language_model import LanguageModel, LanguageModelConfig

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    results: list[dict[str, Any]] = []
    nlls: dict[str, list[np.ndarray]] = {}
    sample: list[Request] = []
    lm = None
    for variant in variants:
        started = time.perf_counter()
        lm = LanguageModel(
            LanguageModelConfig(variant=variant, provider="cpu", threads=threads, max_batch_tokens=max_batch_tokens)
        )
        load_s = time.perf_counter() - started
        if not sample:
            sample = make_events(lm, events, context)
        total = sum(1 + len(c) + len(t) for c, t in sample)
        text = sum(len(t) for _, t in sample)
        for batch in batch_sizes:
            say(f"lm_surprise: {variant} batch {batch}: {len(sample)} events, {total} tokens …")
            passes, out = measure(lm, sample, batch, repeats)
            seconds = min(passes)  # the best pass: other processes on a shared machine only ever slow it down
            nlls.setdefault(variant, out)
            results.append(
                {
                    "variant": variant,
                    "batch": batch,
                    "events_per_s": round(len(sample) / seconds, 1),
                    "tokens_per_s": round(total / seconds, 1),
                    "text_tokens_per_s": round(text / seconds, 1),
                    "seconds": round(seconds, 2),
                    "seconds_median": round(float(np.median(passes)), 2),
                    "load_s": round(load_s, 2),
                    "mean_nll": round(float(np.mean(np.concatenate(out))), 4),
                }
            )
            say(f"  {results[-1]['events_per_s']} events/s, {results[-1]['tokens_per_s']} tokens/s")
    quality: dict[str, Any] = {}
    if "fp32" in nlls and "q8" in nlls:
        a, b = np.concatenate(nlls["fp32"]), np.concatenate(nlls["q8"])
        event_diff = np.abs(np.array([x.mean() for x in nlls["fp32"]]) - np.array([y.mean() for y in nlls["q8"]]))
        quality = {
            "q8_vs_fp32_token_max_abs": round(float(np.abs(a - b).max()), 4),
            "q8_vs_fp32_token_mean_abs": round(float(np.abs(a - b).mean()), 4),
            "q8_vs_fp32_token_corr": round(float(np.corrcoef(a, b)[0, 1]), 5),
            "q8_vs_fp32_event_mean_max_abs": round(float(event_diff.max()), 4),
        }
    return {
        "events": len(sample),
        "context_tokens": context,
        "text_tokens_mean": round(float(np.mean([len(t) for _, t in sample])), 1),
        "threads": lm.threads if lm else threads,
        "max_batch_tokens": max_batch_tokens,
        "repeats": repeats,
        "results": results,
        "quality": quality,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
        },
    }


def bench_lm_surprise(
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
    events: int = typer.Option(64, "--events", "-n", min=1, help="events (sentences) per configuration"),
    context: int = typer.Option(128, "--context", min=0, help="context tokens before each event"),
    batch_sizes: str = typer.Option("1,16", "--batch-sizes", help="comma-separated events per nll() call"),
    variants: str = typer.Option("fp32,q8", "--variants", help="comma-separated LM variants"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads (default: all available)"),
    max_batch_tokens: int = typer.Option(2048, "--max-batch-tokens", min=64, help="padded tokens per inference call"),
    repeats: int = typer.Option(1, "--repeats", min=1, help="passes per configuration (the best is reported)"),
    out: Path | None = typer.Option(None, "--out", help="also write the JSON report to this file"),
) -> None:
    """Throughput of LanguageModel.nll (events/s, tokens/s) on real sentences with context."""
    report = run(
        events=events,
        context=context,
        batch_sizes=[int(b) for b in batch_sizes.split(",") if b.strip()],
        variants=[v.strip() for v in variants.split(",") if v.strip()],
        threads=threads,
        max_batch_tokens=max_batch_tokens,
        repeats=repeats,
    )
    text = json.dumps(report, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    if json_out:
        typer.echo(text)
        return
    for row in report["results"]:
        typer.echo(
            f"{row['variant']:5s} batch {row['batch']:3d}: {row['events_per_s']:7.1f} events/s  "
            f"{row['tokens_per_s']:8.1f} tokens/s  {row['text_tokens_per_s']:7.1f} text tokens/s"
        )
    for key, value in report["quality"].items():
        typer.echo(f"{key}: {value}")


if __name__ == "__main__":
    typer.run(bench_lm_surprise)
