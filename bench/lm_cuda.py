"""LM surprise on a GPU: `models.language_model` on onnxruntime's CUDAExecutionProvider vs its CPU provider,
plus the dev set's LM surprises for the segmentation evaluation (computed where they are cheap).

Meant for a machine with an NVIDIA GPU and ``onnxruntime-gpu`` (the project environment carries the CPU
build). Streams come from a JSON list of lists of texts (``--streams``, made by ``--export`` on a
machine that has the dev set), so the GPU machine needs neither gensim nor network.

    python -m bench.lm_cuda --export streams.json                      # where the dev set is
    python -m bench.lm_cuda --streams streams.json --out result.json   # on the GPU machine

Throughput: ``--events`` events with a full ``context`` tokens each, built exactly as the segmenter
builds them (`models.surprise.LanguageModelSurprise`: earlier events joined by newlines, last C tokens),
scored in calls of each batch size after a warm-up; events/s and tokens/s (all tokens run through the
model) from the best of ``--repeats`` passes. Agreement: max/mean |NLL difference| per token, CUDA vs
CPU. With ``--surprises PATH`` it also computes every event's LM surprise over all streams
(`bench.lm_cache.compute_lm_surprises`, 64 events of different streams per call) and saves
them flat (float64, stream after stream) to PATH.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def export(path: Path) -> None:
    from bench.segmentation_data import load_dev_set, streams

    grouped = streams(load_dev_set())
    path.write_text(json.dumps([[r["text"] for r in records] for records in grouped.values()]))
    print(f"{len(grouped)} streams written to {path}", file=sys.stderr)


def timed(lm, events, batch: int, repeats: int) -> tuple[float, list[np.ndarray]]:
    lm.nll(events[:batch])
    best, out = float("inf"), []
    for _ in range(repeats):
        out = []
        started = time.perf_counter()
        for i in range(0, len(events), batch):
            out.extend(lm.nll(events[i : i + batch]))
        best = min(best, time.perf_counter() - started)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path)
    parser.add_argument("--streams", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--surprises", type=Path)
    parser.add_argument("--events", type=int, default=256)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--cpu-batches", default="1,16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--more-contexts",
        default="",
        help="with --surprises: also these context sizes (comma-separated), saved beside PATH as <stem>_c<C>.npy",
    )
    parser.add_argument("--no-speed", action="store_true", help="skip the throughput measurement")
    args = parser.parse_args()
    if args.export:
        export(args.export)
        return
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    from bench.lm_surprise import segmenter_requests
    from memstream.models.language_model import LanguageModel, LanguageModelConfig

    streams = json.loads(args.streams.read_text())
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "providers": ort.get_available_providers(),
        },
        "context_tokens": args.context,
    }
    engines = {
        "cuda": LanguageModel(LanguageModelConfig(variant="fp32", provider="cuda", max_batch_tokens=65536)),
        "cpu": LanguageModel(LanguageModelConfig(variant="fp32", provider="cpu")),
    }
    report["providers"] = {name: lm.provider for name, lm in engines.items()}
    report["cpu_threads"] = engines["cpu"].threads
    if args.no_speed:
        args.events, args.batches, args.cpu_batches = 64, "64", "16"
    events = segmenter_requests(engines["cuda"], streams, args.events, args.context)
    total = sum(1 + len(c) + len(t) for c, t in events)
    report["events"], report["tokens"] = len(events), total
    rows, nlls = [], {}
    for name, batches in (("cuda", args.batches), ("cpu", args.cpu_batches)):
        for batch in (int(b) for b in batches.split(",")):
            seconds, out = timed(engines[name], events, batch, args.repeats if name == "cuda" else 1)
            nlls.setdefault(name, out)
            rows.append(
                {
                    "provider": name,
                    "batch": batch,
                    "events_per_s": round(len(events) / seconds, 1),
                    "tokens_per_s": round(total / seconds, 1),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report["results"] = rows
    a, b = np.concatenate(nlls["cuda"]), np.concatenate(nlls["cpu"])
    report["cuda_vs_cpu_token_nll"] = {"max_abs": float(np.abs(a - b).max()), "mean_abs": float(np.abs(a - b).mean())}
    if args.surprises:
        from bench.lm_cache import compute_lm_surprises
        from memstream.models.segmentation_config import SegmentationConfig

        report["dev_set"] = {"tag": engines["cuda"].tag}
        more = [int(c) for c in args.more_contexts.split(",") if c.strip()]
        for context in [args.context, *more]:
            config = SegmentationConfig(lm_context_tokens=context)
            started = time.perf_counter()
            values = compute_lm_surprises(streams, config, engines["cuda"], batch=64)
            seconds = time.perf_counter() - started
            path = (
                args.surprises
                if context == args.context
                else args.surprises.with_name(f"{args.surprises.stem}_c{context}.npy")
            )
            np.save(path, np.concatenate(values))
            report["dev_set"][f"c{context}"] = {
                "events": int(sum(len(v) for v in values)),
                "seconds": round(seconds, 1),
                "events_per_s": round(sum(len(v) for v in values) / seconds, 1),
            }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
