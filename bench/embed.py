"""Embedding benchmark: sentence-transformers (anchor) vs the ONNX embedder, fp32 and int8.

Real Wikipedia sentences (``bench.corpus``) go through each engine at several batch sizes. The engines are
interleaved: each repetition measures every engine once per batch size (one pass over all sentences), in an
order rotated from one repetition to the next, so a change in the machine's load hits them alike. Each turn
records the share of all cores that OTHER processes used meanwhile (``bench.cpu_load``: /proc/stat's busy
time less this process's own CPU time). Reported per batch size: per engine, sentences/s median, min and max
over the repetitions and the other-process load of its turns; per ratio (fp32/anchor, int8/anchor,
int8/fp32), the median, min and max of the ratios computed within each repetition, the largest load behind
it and ``quiet``: false when any of its turns saw other processes use more than ``--max-other-load`` of the
cores. A ratio that is not quiet was measured under load, where PyTorch suffers more than ONNX Runtime, and
is not to be stated as the embedder's speed: only a quiet run's figures go into the README.

Quality is measured at batch 32 against a reference (the anchor when sentence-transformers is importable,
else fp32): cosine per sentence, and top-10 neighbour agreement (for each sentence, the share of its 10
nearest neighbours in the reference space that are also among its 10 nearest in the engine's space), which
is what retrieval feels.

The anchor needs torch, which the project environment does not carry (``pip install '.[anchor]'`` adds it;
or run the bench from another environment that has sentence-transformers and memstream's worker extra):

    PYTHONPATH=. .venv/bin/python -m bench.embed --json --out result.json

(the same command is ``memstream bench embed``; ``--no-anchor`` measures fp32 against int8 only.)
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import typer

from bench import cpu_load
from bench.corpus import wiki_sentences
from memstream.models.onnx_cache import available_cpus

QUALITY_BATCH = 32
DEFAULT_MAX_OTHER_LOAD = 0.1
"""Other processes' share of the cores above which a turn, and every ratio it enters, is not quiet."""
Encode = Callable[[list[str]], np.ndarray]


def top_k_agreement(reference: np.ndarray, other: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's k nearest neighbours (cosine, self excluded) that both spaces agree on."""

    def neighbours(v: np.ndarray) -> np.ndarray:
        sim = v @ v.T
        np.fill_diagonal(sim, -np.inf)
        return np.argpartition(-sim, k, axis=1)[:, :k]

    a, b = neighbours(reference), neighbours(other)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist())]))


def _anchor(threads: int) -> tuple[Encode | None, str]:
    """sentence-transformers on the same registry weights, or None with the reason it is skipped."""
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import sentence_transformers
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        return None, f"sentence-transformers not importable here ({exc.name or exc}); anchor skipped"
    from memstream.models.assets import MINILM, asset_path

    asset_path(MINILM, "model.safetensors")
    for member in (
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "tokenizer.json",
    ):
        asset_path(MINILM, member)
    torch.set_num_threads(threads)
    model = SentenceTransformer(str(asset_path(MINILM, "config.json").parent), device="cpu")

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(
            texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    return encode, f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}"


def _onnx(variant: str, threads: int, max_batch: int) -> tuple[Encode, str]:
    from memstream.models.embedder import Embedder, EmbedderConfig

    embedder = Embedder(EmbedderConfig(variant=variant, provider="cpu", threads=threads, batch_size=max_batch))
    return embedder.embed, f"onnxruntime {variant} ({embedder.provider})"


def _one_pass(encode: Encode, sentences: list[str], batch: int) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    parts = [encode(sentences[i : i + batch]) for i in range(0, len(sentences), batch)]
    return len(sentences) / (time.perf_counter() - started), np.concatenate(parts)


def turn_order(engines: Sequence[str], repetition: int, batch_index: int) -> list[str]:
    """The engines' order in one repetition at one batch size: rotated by one each repetition (and offset by
    the batch size's index), so each engine goes first, second and last equally often."""
    shift = (repetition + batch_index) % len(engines) if engines else 0
    return [*engines[shift:], *engines[:shift]]


PAIRS = (("fp32", "anchor"), ("int8", "anchor"), ("int8", "fp32"))
"""The ratios reported, numerator over denominator (those whose engines both ran)."""


def summarise(
    rates: dict[int, dict[str, list[float]]],
    loads: dict[int, dict[str, list[float]]],
    max_other_load: float,
    pairs: Sequence[tuple[str, str]] = PAIRS,
) -> dict[str, dict[str, Any]]:
    """The per-batch tables from the per-repetition measurements: per engine, sentences/s (median, min,
    max) and the other-process load of its turns; per ratio (``pairs``: numerator, denominator), the
    per-repetition ratios' median and spread, the largest load behind it and its quiet flag."""
    table: dict[str, dict[str, Any]] = {}
    for batch, by_engine in rates.items():
        row: dict[str, Any] = {
            name: {
                "per_s": cpu_load.spread(values, digits=1),
                "other_load": cpu_load.spread(loads[batch][name], digits=3),
            }
            for name, values in by_engine.items()
        }
        row["ratios"] = {
            f"{top}/{bottom}": cpu_load.ratio_report(
                by_engine[top], by_engine[bottom], loads[batch][top] + loads[batch][bottom], max_other_load
            )
            for top, bottom in pairs
            if top in by_engine and bottom in by_engine
        }
        table[str(batch)] = row
    return table


def run(
    n: int = 2000,
    batch_sizes: Sequence[int] = (1, 32, 128),
    repeats: int = 5,
    threads: int | None = None,
    anchor: bool = True,
    max_other_load: float = DEFAULT_MAX_OTHER_LOAD,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the benchmark; returns the report (batch-32 headline keys plus per-batch tables)."""
    from rich.console import Console
    from rich.progress import Progress

    threads = threads or available_cpus()
    sentences = wiki_sentences(n)
    batch_sizes = sorted(set(batch_sizes) | {QUALITY_BATCH})
    engines: dict[str, tuple[Encode, str]] = {}
    notes: list[str] = []
    if anchor:
        encode, about = _anchor(threads)
        if encode is None:
            notes.append(about)
            print(f"bench: {about}", file=sys.stderr)
        else:
            engines["anchor"] = (encode, about)
    for variant in ("fp32", "int8"):
        engines[variant] = _onnx(variant, threads, max(batch_sizes))
    names = list(engines)

    for batch in batch_sizes:  # warm-up, outside every measured turn
        for encode, _ in engines.values():
            encode(sentences[:batch])

    rates = {batch: {name: [] for name in names} for batch in batch_sizes}
    loads = {batch: {name: [] for name in names} for batch in batch_sizes}
    turns: list[dict[str, Any]] = []
    vectors: dict[str, np.ndarray] = {}
    # Engines are interleaved: every repetition measures each engine once per batch size, in a rotated order,
    # and each turn records how much of the machine other processes used meanwhile.
    with Progress(console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("embedding", total=len(names) * len(batch_sizes) * repeats)
        for rep in range(repeats):
            for index, batch in enumerate(batch_sizes):
                for name in turn_order(names, rep, index):
                    bar.update(task, description=f"repetition {rep + 1}, batch {batch}: {name}")
                    before = cpu_load.sample()
                    rate, vecs = _one_pass(engines[name][0], sentences, batch)
                    load = cpu_load.other_load(before, cpu_load.sample())
                    rates[batch][name].append(rate)
                    loads[batch][name].append(load)
                    turns.append(
                        {
                            "repetition": rep,
                            "batch": batch,
                            "engine": name,
                            "per_s": round(rate, 1),
                            "other_load": round(load, 3),
                        }
                    )
                    if batch == QUALITY_BATCH:
                        vectors[name] = vecs.astype(np.float32)
                    bar.advance(task)

    reference = "anchor" if "anchor" in vectors else "fp32"
    ref = vectors[reference]
    quality: dict[str, dict[str, float]] = {}
    for name in ("fp32", "int8"):
        cos = np.sum(vectors[name] * ref, axis=1)
        quality[name] = {
            "cos_min": round(float(cos.min()), 6),
            "cos_mean": round(float(cos.mean()), 6),
            "top10_agreement": round(top_k_agreement(ref, vectors[name]), 4),
        }
    int8_vs_fp32 = round(top_k_agreement(vectors["fp32"], vectors["int8"]), 4)

    per_batch = summarise(rates, loads, max_other_load)
    head = per_batch[str(QUALITY_BATCH)]
    all_ratios = [r for row in per_batch.values() for r in row["ratios"].values()]
    quiet = all(r["quiet"] for r in all_ratios)
    if not quiet:
        notes.append(
            f"other processes used more than {max_other_load:.0%} of the cores during some turns "
            f"(up to {max(t['other_load'] for t in turns):.0%}): the ratios marked quiet=false were measured "
            "under load and are not to be stated"
        )

    def ratio(pair: str) -> float | None:
        found = head["ratios"].get(pair)
        return found["median"] if found else None

    import onnxruntime

    return {
        "batch": QUALITY_BATCH,
        "quiet": quiet,
        "max_other_load": max_other_load,
        "anchor_per_s": head["anchor"]["per_s"]["median"] if "anchor" in head else None,
        "fp32_per_s": head["fp32"]["per_s"]["median"],
        "int8_per_s": head["int8"]["per_s"]["median"],
        "fp32_ratio": ratio("fp32/anchor"),
        "int8_ratio": ratio("int8/anchor"),
        "int8_vs_fp32_speedup": ratio("int8/fp32"),
        "fp32_cos_min": quality["fp32"]["cos_min"],
        "fp32_cos_mean": quality["fp32"]["cos_mean"],
        "fp32_top10_agreement": quality["fp32"]["top10_agreement"],
        "int8_cos_min": quality["int8"]["cos_min"],
        "int8_cos_mean": quality["int8"]["cos_mean"],
        "int8_top10_agreement": quality["int8"]["top10_agreement"],
        "int8_top10_agreement_vs_fp32": int8_vs_fp32,
        "reference": reference,
        "per_batch": per_batch,
        "sentences": len(sentences),
        "repeats": repeats,
        "order": "interleaved: each repetition runs every engine once per batch size, order rotated",
        "other_load": "share of all cores used by other processes during a turn (/proc/stat busy - own CPU)",
        "threads": threads,
        "engines": {name: about for name, (_, about) in engines.items()},
        "machine": {
            "cpus": available_cpus(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
        },
        "notes": notes,
        "turns": turns,
    }


def _cell(stats: dict[str, float], fmt: str) -> str:
    return f"{stats['median']:{fmt}} ({stats['min']:{fmt}}–{stats['max']:{fmt}})"


def bench_embed(
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
    sentences: int = typer.Option(2000, "--sentences", "-n", min=64, help="Wikipedia sentences to embed"),
    batch_sizes: str = typer.Option("1,32,128", "--batch-sizes", help="comma-separated batch sizes"),
    repeats: int = typer.Option(
        5, "--repeats", min=1, help="repetitions; each runs every engine once per batch size (interleaved)"
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads (default: all available)"),
    anchor: bool = typer.Option(True, "--anchor/--no-anchor", help="measure sentence-transformers when importable"),
    max_other_load: float = typer.Option(
        DEFAULT_MAX_OTHER_LOAD,
        "--max-other-load",
        min=0.0,
        max=1.0,
        help="share of the cores other processes may use during a turn before the ratios it enters are flagged"
        " quiet=false",
    ),
    out: Path | None = typer.Option(None, "--out", help="also write the JSON report to this file"),
) -> None:
    """Benchmark the ONNX embedder (fp32, int8) against sentence-transformers on real sentences, recording
    the machine's load during each engine's turn."""
    sizes = [int(part) for part in batch_sizes.split(",") if part.strip()]
    report = run(
        n=sentences,
        batch_sizes=sizes,
        repeats=repeats,
        threads=threads,
        anchor=anchor,
        max_other_load=max_other_load,
        progress=True,
    )
    text = json.dumps(report, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    if json_out:
        typer.echo(text)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"sentences/s, median (min–max) of {repeats} interleaved repetitions; largest share of "
        f"the cores other processes used in a turn in brackets ({report['sentences']} sentences, {report['threads']} threads)"
    )
    first = report["per_batch"][next(iter(report["per_batch"]))]
    engines = [name for name in ("anchor", "fp32", "int8") if name in first]
    pairs = list(first["ratios"])
    table.add_column("batch", justify="right")
    for name in engines:
        table.add_column(name, justify="right")
    for pair in pairs:
        table.add_column(pair, justify="right")
    for batch, row in report["per_batch"].items():
        cells = [batch]
        for name in engines:
            cells.append(f"{_cell(row[name]['per_s'], '.0f')} [{row[name]['other_load']['max']:.0%}]")
        for pair in pairs:
            r = row["ratios"][pair]
            flag = "" if r["quiet"] else " [red]loaded[/red]"
            cells.append(f"{_cell(r, '.2f')}×{flag}")
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(
        f"vs {report['reference']}: fp32 cos min {report['fp32_cos_min']:.6f}; int8 cos mean "
        f"{report['int8_cos_mean']:.4f}, min {report['int8_cos_min']:.4f}, top-10 agreement "
        f"{report['int8_top10_agreement']:.3f}"
    )
    for note in report["notes"]:
        console.print(f"[yellow]{note}[/yellow]")


if __name__ == "__main__":
    typer.run(bench_embed)
