"""Embedding benchmark: sentence-transformers (anchor) vs the ONNX embedder, fp32 and int8.

Real Wikipedia sentences (``bench.corpus``) go through each engine at several batch sizes; sentences/s
is the median of ``repeats`` passes over all sentences, the engines taking turns. Quality is measured at batch 32 against a reference (the anchor
when sentence-transformers is importable, else fp32): cosine per sentence, and top-10 neighbour
agreement (for each sentence, the share of its 10 nearest neighbours in the reference space that are
also among its 10 nearest in the engine's space), which is what retrieval feels.

The anchor needs torch, which the project environment does not carry; run the bench from an
environment that has sentence-transformers, with the project on the path:

    PYTHONPATH=/work/main /work/stvenv/bin/python -m bench.embed --json

(``python -m bench.embed`` needs only numpy, onnxruntime, tokenizers, pydantic, typer and rich; the
same command is ``memstream bench-embed`` in the project environment.)
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import typer

from bench.corpus import wiki_sentences
from memstream.models.onnx_cache import available_cpus

QUALITY_BATCH = 32
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


def run(
    n: int = 2000,
    batch_sizes: Sequence[int] = (1, 32, 128),
    repeats: int = 3,
    threads: int | None = None,
    anchor: bool = True,
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

    per_s: dict[str, dict[int, float]] = {name: {} for name in engines}
    vectors: dict[str, np.ndarray] = {}
    # Engines take turns within each repeat, so a change in machine load hits them alike.
    with Progress(console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("embedding", total=len(engines) * len(batch_sizes) * repeats)
        for batch in batch_sizes:
            rates: dict[str, list[float]] = {name: [] for name in engines}
            for encode, _ in engines.values():
                encode(sentences[:batch])  # warm-up
            for _ in range(repeats):
                for name, (encode, _) in engines.items():
                    bar.update(task, description=f"batch {batch}: {name}")
                    rate, vecs = _one_pass(encode, sentences, batch)
                    rates[name].append(rate)
                    if batch == QUALITY_BATCH:
                        vectors[name] = vecs.astype(np.float32)
                    bar.advance(task)
            for name in engines:
                per_s[name][batch] = round(statistics.median(rates[name]), 1)

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

    def ratio(name: str, batch: int) -> float | None:
        if "anchor" not in per_s:
            return None
        return round(per_s[name][batch] / per_s["anchor"][batch], 2)

    b = QUALITY_BATCH
    import onnxruntime

    return {
        "batch": b,
        "anchor_per_s": per_s.get("anchor", {}).get(b),
        "fp32_per_s": per_s["fp32"][b],
        "int8_per_s": per_s["int8"][b],
        "fp32_ratio": ratio("fp32", b),
        "int8_ratio": ratio("int8", b),
        "int8_vs_fp32_speedup": round(per_s["int8"][b] / per_s["fp32"][b], 2),
        "fp32_cos_min": quality["fp32"]["cos_min"],
        "fp32_cos_mean": quality["fp32"]["cos_mean"],
        "fp32_top10_agreement": quality["fp32"]["top10_agreement"],
        "int8_cos_min": quality["int8"]["cos_min"],
        "int8_cos_mean": quality["int8"]["cos_mean"],
        "int8_top10_agreement": quality["int8"]["top10_agreement"],
        "int8_top10_agreement_vs_fp32": int8_vs_fp32,
        "reference": reference,
        "per_batch": {
            str(batch): {
                **{f"{name}_per_s": per_s[name][batch] for name in per_s},
                **({f"{name}_ratio": ratio(name, batch) for name in ("fp32", "int8")} if "anchor" in per_s else {}),
            }
            for batch in batch_sizes
        },
        "sentences": len(sentences),
        "repeats": repeats,
        "threads": threads,
        "engines": {name: about for name, (_, about) in engines.items()},
        "machine": {
            "cpus": available_cpus(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
        },
        "notes": notes,
    }


def bench_embed(
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
    sentences: int = typer.Option(2000, "--sentences", "-n", min=64, help="Wikipedia sentences to embed"),
    batch_sizes: str = typer.Option("1,32,128", "--batch-sizes", help="comma-separated batch sizes"),
    repeats: int = typer.Option(3, "--repeats", min=1, help="passes per measurement (median reported)"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads (default: all available)"),
    anchor: bool = typer.Option(True, "--anchor/--no-anchor", help="measure sentence-transformers when importable"),
    out: Path | None = typer.Option(None, "--out", help="also write the JSON report to this file"),
) -> None:
    """Benchmark the ONNX embedder (fp32, int8) against sentence-transformers on real sentences."""
    sizes = [int(part) for part in batch_sizes.split(",") if part.strip()]
    report = run(n=sentences, batch_sizes=sizes, repeats=repeats, threads=threads, anchor=anchor, progress=True)
    text = json.dumps(report, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    if json_out:
        typer.echo(text)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"sentences/s ({report['sentences']} sentences, {report['threads']} threads, median of {repeats})"
    )
    engines = [name for name in ("anchor", "fp32", "int8") if f"{name}_per_s" in report["per_batch"][str(sizes[0])]]
    table.add_column("batch", justify="right")
    for name in engines:
        table.add_column(name, justify="right")
        if name != "anchor" and "anchor" in engines:
            table.add_column(f"{name}/anchor", justify="right")
    for batch, row in report["per_batch"].items():
        cells = [batch]
        for name in engines:
            cells.append(f"{row[f'{name}_per_s']:.0f}")
            if name != "anchor" and "anchor" in engines:
                cells.append(f"{row[f'{name}_ratio']:.2f}×")
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
