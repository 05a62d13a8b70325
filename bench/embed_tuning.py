"""Which onnxruntime session options make the embedder faster on this machine: each option is measured
against the shipped configuration in the same run, interleaved, on a quiet machine, and kept only if it wins.

Options tried (issue 17, part 2), per variant (fp32, int8) and batch size (1, 32, 128):

- ``shipped``: the embedder as configured by default (intra-op threads = the usable cores, spinning off);
- ``spin``: onnxruntime's idle intra-op threads spin between operators (``spin_wait=True``);
- ``threads1``: one intra-op thread (what a worker gets if it leaves the other core to Kafka and Faust);
- ``iobinding``: the same session run through an IOBinding whose output is a pre-allocated array.

Sequence bucketing is not an option here: the embedder already sorts a call's texts by length before it cuts
them into batches (``EmbedderConfig.sort_by_length``), and a benchmark turn hands it one batch at a time.

Each repetition runs every option once per batch size, in an order rotated per repetition; every turn
records the share of the cores other processes used (``bench.cpu_load``). Reported: sentences/s (median,
min, max) per option and the per-repetition ratio option/shipped with its quiet flag.

    PYTHONPATH=. .venv/bin/python -m bench.embed_tuning --json --out result.json
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import typer

from bench import cpu_load
from bench.corpus import wiki_sentences
from bench.embed import DEFAULT_MAX_OTHER_LOAD, _one_pass, summarise, turn_order
from memstream.models.onnx_cache import available_cpus

Encode = Callable[[list[str]], np.ndarray]
OPTIONS = ("shipped", "spin", "threads1", "iobinding")


def _with_iobinding(embedder: Any) -> Encode:
    """The embedder's own tokenisation, run through an IOBinding into a pre-allocated output array."""
    import onnxruntime as ort

    from memstream.models.embedder import _encode

    session = embedder._session
    output = session.get_outputs()[0].name
    buffers: dict[int, np.ndarray] = {}

    def encode(texts: list[str]) -> np.ndarray:
        feeds = _encode(embedder._tokenizer, texts)
        if "token_type_ids" in embedder._inputs:
            feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        out = buffers.get(len(texts))
        if out is None:
            out = buffers[len(texts)] = np.empty((len(texts), embedder.dim), dtype=np.float32)
        binding.bind_ortvalue_output(output, ort.OrtValue.ortvalue_from_numpy(out))
        session.run_with_iobinding(binding)
        return out.copy()

    return encode


def _engine(option: str, variant: str, threads: int, max_batch: int) -> Encode:
    from memstream.models.embedder import Embedder, EmbedderConfig

    config = EmbedderConfig(
        variant=variant,
        provider="cpu",
        threads=1 if option == "threads1" else threads,
        batch_size=max_batch,
        spin_wait=option == "spin",
    )
    embedder = Embedder(config)
    return _with_iobinding(embedder) if option == "iobinding" else embedder.embed


def run(
    variant: str = "fp32",
    n: int = 1000,
    batch_sizes: Sequence[int] = (1, 32, 128),
    repeats: int = 3,
    options: Sequence[str] = OPTIONS,
    max_other_load: float = DEFAULT_MAX_OTHER_LOAD,
    progress: bool = True,
) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import Progress

    threads = available_cpus()
    sentences = wiki_sentences(n)
    engines = {option: _engine(option, variant, threads, max(batch_sizes)) for option in options}
    names = list(engines)
    reference = engines["shipped"](sentences[:64])
    agreement = {}
    for name, encode in engines.items():
        for batch in batch_sizes:
            encode(sentences[:batch])  # warm-up
        agreement[name] = float(np.min(np.sum(encode(sentences[:64]) * reference, axis=1)))
    rates = {b: {name: [] for name in names} for b in batch_sizes}
    loads = {b: {name: [] for name in names} for b in batch_sizes}
    with Progress(console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("tuning", total=len(names) * len(batch_sizes) * repeats)
        for rep in range(repeats):
            for index, batch in enumerate(batch_sizes):
                for name in turn_order(names, rep, index):
                    bar.update(task, description=f"{variant} repetition {rep + 1}, batch {batch}: {name}")
                    before = cpu_load.sample()
                    rate, _ = _one_pass(engines[name], sentences, batch)
                    rates[batch][name].append(rate)
                    loads[batch][name].append(cpu_load.other_load(before, cpu_load.sample()))
                    bar.advance(task)
    pairs = [(name, "shipped") for name in names if name != "shipped"]
    per_batch = summarise(rates, loads, max_other_load, pairs)
    return {
        "variant": variant,
        "sentences": len(sentences),
        "repeats": repeats,
        "threads": threads,
        "max_other_load": max_other_load,
        "min_cosine_vs_shipped": {name: round(value, 6) for name, value in agreement.items()},
        "per_batch": per_batch,
    }


def bench_embed_tuning(
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
    variants: str = typer.Option("fp32,int8", "--variants", help="comma-separated embedder variants"),
    sentences: int = typer.Option(1000, "--sentences", "-n", min=64),
    repeats: int = typer.Option(3, "--repeats", min=1),
    out: Path | None = typer.Option(None, "--out", help="also write the JSON report to this file"),
) -> None:
    """Compare onnxruntime session options for the embedder against its shipped configuration."""
    report = {
        "runs": [run(variant=v.strip(), n=sentences, repeats=repeats) for v in variants.split(",") if v.strip()],
        "options": {
            "shipped": "defaults: intra-op threads = usable cores, spinning off",
            "spin": "spin_wait=True",
            "threads1": "one intra-op thread",
            "iobinding": "IOBinding with a pre-allocated output array",
        },
    }
    text = json.dumps(report, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    if json_out:
        typer.echo(text)
        return
    for r in report["runs"]:
        for batch, row in r["per_batch"].items():
            cells = ", ".join(
                f"{k} {v['median']:.2f}x{'' if v['quiet'] else ' (loaded)'}" for k, v in row["ratios"].items()
            )
            typer.echo(f"{r['variant']} batch {batch}: shipped {row['shipped']['per_s']['median']:.0f}/s; {cells}")


if __name__ == "__main__":
    typer.run(bench_embed_tuning)
