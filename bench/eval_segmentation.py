"""Episodic segmentation quality: memstream's streaming segmenter against simple and TextTiling baselines.

Input: JSONL records ``{"stream": id, "text": str, "boundary": bool}`` (streams contiguous; ``boundary``
marks a record that opens a gold segment; optional ``ts`` seconds and ``role``), event records, or the
named sets ``wiki`` (the Wikipedia dev set, the default) and ``demo`` (the demo conversation); see
`bench.segmentation_data`. Texts are embedded once and cached (`bench.embedding_cache`). `run_many`
evaluates several inputs in one run.

Metrics (`bench.segmentation_metrics`: Pk, WindowDiff, boundary F1 within ±``tolerance``, exact and ±1),
per stream, then averaged weighted by stream length (``pk``, ``windowdiff``, ``f1``, ``f1_exact``,
``f1_tol1``, …) and unweighted, one vote per stream as the dialogue papers report them (``pk_mean``,
``windowdiff_mean``).

Methods: ``memstream`` (the streaming `Segmenter` on embedding surprise, pushed one event at a time as the
worker does), ``memstream_lm`` and ``memstream_blend`` (the same segmenter on token-level LM surprise, or
both signals; only with ``lm=True``; the surprises are cached by `bench.lm_cache`), ``memstream_unrefined``
(embedding, refinement off), and the baselines of `bench.segmentation_baselines`: ``none``, ``random``,
``fixed``, ``texttiling``, ``texttiling_oracle``. Only the last three baselines, ``random`` and ``fixed``
know something of the gold segmentation; ``memstream`` knows nothing.

This module is the runner (`run`): it loads the records, cuts them into streams, runs every method on each
and averages the metrics, and times each signal.

Run: ``python -m bench.eval_segmentation [input.jsonl]`` → JSON on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.embedding_cache import Embed, cached_embeddings, default_embedder
from bench.lm_cache import cached_lm_surprises, compute_lm_surprises, default_language_model
from bench.segmentation_baselines import BASELINES, baseline_boundaries
from bench.segmentation_metrics import TOLERANCE, stream_metrics
from memstream.models.segmentation_config import SegmentationConfig
from memstream.models.segmenter import Segmenter
from memstream.models.session_state import SessionState

LM_METHODS = ("memstream_lm", "memstream_blend")
METHODS = ("memstream", "memstream_unrefined", *BASELINES)


# -- data ----------------------------------------------------------------------------------------
NAMED_SETS = ("wiki", "demo")


def load_records(input_path: Path | str | None) -> list[dict[str, Any]]:
    """Records of a file, a named set (``wiki``: the default, ``demo``), or ``histories:FILE`` (chat
    histories built from the dialogues of FILE, `bench.segmentation_data.load_histories_set`)."""
    from bench.segmentation_data import HISTORIES, load_demo_set, load_dev_set, load_histories_set, load_jsonl

    if input_path is None or str(input_path) == "wiki":
        return [dict(r) for r in load_dev_set()]
    if str(input_path) == "demo":
        return [dict(r) for r in load_demo_set()]
    if str(input_path).startswith(HISTORIES):
        return [dict(r) for r in load_histories_set(Path(str(input_path)[len(HISTORIES) :]))]
    return [dict(r) for r in load_jsonl(Path(input_path))]


def dataset_name(input_path: Path | str | None) -> str:
    if input_path is None:
        return "wiki"
    from bench.segmentation_data import HISTORIES

    if str(input_path).startswith(HISTORIES):
        return "histories-" + Path(str(input_path)[len(HISTORIES) :]).stem
    return str(input_path) if str(input_path) in NAMED_SETS else Path(input_path).stem


def signal_cost_ms(
    texts: Sequence[str], config: SegmentationConfig, lm=None, embed: Embed | None = None
) -> dict[str, float]:
    """Milliseconds per event of each surprise signal's model, measured on ``texts`` (as one stream, in
    batches of 16 for the LM and 32 for the embedder), uncached."""
    out: dict[str, float] = {}
    if embed is None:
        embed, _ = default_embedder()
    t = time.perf_counter()
    for b in range(0, len(texts), 32):
        embed(list(texts[b : b + 32]))
    out["embedding"] = round(1000 * (time.perf_counter() - t) / max(len(texts), 1), 3)
    if lm is not None:
        streams = [texts[k::16] for k in range(16)]  # 16 sessions, one event each per model call
        t = time.perf_counter()
        compute_lm_surprises(streams, config, lm, progress=False)
        out["lm"] = round(1000 * (time.perf_counter() - t) / max(len(texts), 1), 3)
        out["blend"] = round(out["embedding"] + out["lm"], 3)
    return out


# -- memstream ----------------------------------------------------------------------------------
def memstream_boundaries(
    vectors: np.ndarray,
    config: SegmentationConfig,
    texts: Sequence[str] = (),
    lm: np.ndarray | None = None,
    ts: Sequence[float] | None = None,
) -> list[int]:
    """Boundaries found by the streaming segmenter, fed one event at a time, then flushed. ``lm``: the
    events' LM surprises (`lm_surprises`), for LM and blend configs; ``ts``: the events' times (default:
    their positions, one second apart)."""
    segmenter, state = Segmenter(config), SessionState()
    starts: list[int] = []
    for i, v in enumerate(vectors):
        text = texts[i] if texts else ""
        surprise = None if lm is None else float(lm[i])
        t = float(i) if ts is None else float(ts[i])
        changes = segmenter.push(state, str(i), t, v, text, lm_surprise=surprise)
        starts += [int(c.event_ids[0]) for c in changes if c.kind == "sealed"]
    starts += [int(c.event_ids[0]) for c in segmenter.flush(state) if c.kind == "sealed"]
    return [s for s in starts if s > 0]


# -- the run ---------------------------------------------------------------------------------------
def run(
    input_path: Path | str | None = None,
    *,
    config: SegmentationConfig | None = None,
    methods: Sequence[str] = METHODS,
    embed: Embed | None = None,
    vectors: np.ndarray | None = None,
    tolerance: int = TOLERANCE,
    seed: int = 0,
    lm: bool | Any = False,
    max_streams: int | None = None,
    cost_events: int = 128,
) -> dict[str, Any]:
    """Evaluate ``methods``; returns ``{"f1": {method: …}, "pk": {…}, "windowdiff": {…}, …}``.

    ``vectors`` (aligned with the records) skips embedding; ``embed`` replaces the default embedder.
    ``lm``: True (the default language model) or a `TokenScorer` adds the LM methods; ``max_streams``
    evaluates the first streams only; ``cost_events`` events time each signal (0: no timing).
    """
    t0 = time.perf_counter()
    records = load_records(input_path)
    if max_streams is not None:
        names = list(dict.fromkeys(r["stream"] for r in records))[:max_streams]
        keep = set(names)
        records = [r for r in records if r["stream"] in keep]
        if vectors is not None:
            raise ValueError("max_streams cannot be combined with precomputed vectors")
    embed_tag = None
    if embed is None and cost_events:  # the cost timing needs the embedder anyway: load it once, for both
        embed, embed_tag = default_embedder()
    if vectors is None:
        vectors = cached_embeddings([r["text"] for r in records], embed, embed_tag)
    config = config or SegmentationConfig()
    configs = {
        "memstream": config.model_copy(update={"surprise": "embedding"}),
        "memstream_lm": config.model_copy(update={"surprise": "lm"}),
        "memstream_blend": config.model_copy(update={"surprise": "blend"}),
        "memstream_unrefined": config.model_copy(update={"surprise": "embedding", "refine": "none"}),
    }
    methods = [m for m in methods if lm is not False or m not in LM_METHODS]
    if lm is not False:
        methods = [*methods[:1], *[m for m in LM_METHODS if m not in methods], *methods[1:]]
    streams: list[tuple[int, int, list[int]]] = []  # (start, end, gold boundaries relative to start)
    start = 0
    for i in range(1, len(records) + 1):
        if i == len(records) or records[i]["stream"] != records[start]["stream"]:
            gold = [j - start for j in range(start + 1, i) if records[j]["boundary"]]
            streams.append((start, i, gold))
            start = i
    lm_model, lm_values = None, None
    if lm is not False:
        lm_model = default_language_model()[0] if lm is True else lm
        per_stream = cached_lm_surprises([[r["text"] for r in records[s:e]] for s, e, _ in streams], config, lm_model)
        lm_values = np.concatenate(per_stream) if per_stream else np.zeros(0)
    rng = np.random.default_rng(seed)
    totals: dict[str, dict[str, float]] = {m: {} for m in methods}
    means: dict[str, dict[str, float]] = {m: {} for m in methods}  # unweighted sums, one vote per stream
    predicted: dict[str, int] = {m: 0 for m in methods}
    seconds: dict[str, float] = {m: 0.0 for m in methods}
    weight = counted = 0
    has_ts = all("ts" in r for r in records)
    for s, e, gold in streams:
        n = e - s
        if n < 2:
            continue
        weight += n
        counted += 1
        x = vectors[s:e]
        ts = [float(r["ts"]) for r in records[s:e]] if has_ts else None
        for method in methods:
            t = time.perf_counter()
            if method in configs:
                texts = [r["text"] for r in records[s:e]] if Segmenter(configs[method]).needs_text else ()
                values = lm_values[s:e] if configs[method].uses_lm else None
                pred = memstream_boundaries(x, configs[method], texts, values, ts)
            else:
                pred = baseline_boundaries(method, x, gold, rng)
            seconds[method] += time.perf_counter() - t
            predicted[method] += len(pred)
            for name, value in stream_metrics(pred, gold, n, tolerance).items():
                totals[method][name] = totals[method].get(name, 0.0) + n * value
                means[method][name] = means[method].get(name, 0.0) + value
    metrics = ("f1", "pk", "windowdiff", "precision", "recall", "f1_exact", "f1_tol1")
    out: dict[str, Any] = {name: {m: round(totals[m][name] / weight, 4) for m in methods} for name in metrics}
    for name in ("pk", "windowdiff"):
        out[f"{name}_mean"] = {m: round(means[m][name] / counted, 4) for m in methods}
    out["boundaries"] = predicted
    out["data"] = {
        "name": dataset_name(input_path),
        "streams": len(streams),
        "records": len(records),
        "gold_boundaries": sum(len(g) for _, _, g in streams),
        "tolerance": tolerance,
        "timestamps": has_ts,
    }
    out["config"] = config.model_dump()
    if cost_events:
        cost = signal_cost_ms([r["text"] for r in records[:cost_events]], config, lm_model, embed)
        signal = {
            "memstream": "embedding",
            "memstream_unrefined": "embedding",
            "memstream_lm": "lm",
            "memstream_blend": "blend",
        }
        out["cost_ms_per_event"] = {
            m: round(cost[signal[m]] + 1000 * seconds[m] / max(weight, 1), 3) for m in methods if m in signal
        }
        out["cost_ms_per_event"]["signals"] = cost
    out["seconds"] = {"total": round(time.perf_counter() - t0, 2), **{m: round(v, 2) for m, v in seconds.items()}}
    return out


def run_many(inputs: Sequence[Path | str | None], **kwargs: Any) -> dict[str, Any]:
    """`run` on each input; ``{"datasets": {name: result}}`` (a name met twice gets a ``#2`` suffix)."""
    out: dict[str, Any] = {}
    for input_path in inputs:
        name = dataset_name(input_path)
        key, k = name, 1
        while key in out:
            k += 1
            key = f"{name}#{k}"
        out[key] = run(input_path, **kwargs)
    return {"datasets": out}


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(run(args[0] if args else None) if len(args) <= 1 else run_many(args), indent=2))
