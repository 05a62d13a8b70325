"""Episodic segmentation quality: memstream's streaming segmenter against simple and TextTiling baselines.

Input: JSONL records ``{"stream": id, "text": str, "boundary": bool}`` (streams contiguous; ``boundary``
marks a record that opens a gold segment), or by default the Wikipedia dev set of
`bench.segmentation_data`. Texts are embedded once by `models.embedder` and cached under
``cache_dir()/eval`` by a hash of the texts.

Metrics, per stream then averaged weighted by stream length:

- Pk and WindowDiff (``nltk.metrics.segmentation``), k = half the stream's mean gold segment length;
- boundary F1: a predicted boundary within ±``tolerance`` records of a gold one is correct (precision),
  a gold boundary within ±``tolerance`` of a predicted one is found (recall).

Methods: ``memstream`` (the streaming `Segmenter` on embedding surprise, pushed one event at a time as the
worker does), ``memstream_lm`` and ``memstream_blend`` (the same segmenter on token-level LM surprise, or
both signals; only with ``lm=True``: the LM reads every event after 128 tokens of context, which takes
about an hour for the whole dev set on 2 CPU cores, so its surprises are cached like the embeddings),
``memstream_unrefined`` (embedding, refinement off), ``none``, ``random`` (gold count), ``fixed`` (gold mean
length), ``texttiling`` (depth scores over the same embeddings, cutoff mean − std/2) and
``texttiling_oracle`` (the gold number of deepest valleys). Only the last three baselines, ``random``
and ``fixed`` know something of the gold segmentation; ``memstream`` knows nothing.

Run: ``python -m bench.eval_segmentation [input.jsonl]`` → JSON on stdout.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memstream.models.segmentation_config import SegmentationConfig
from memstream.models.segmenter import Segmenter
from memstream.models.session_state import SessionState

LM_METHODS = ("memstream_lm", "memstream_blend")
METHODS = ("memstream", "memstream_unrefined", "none", "random", "fixed", "texttiling", "texttiling_oracle")
TOLERANCE = 3
TEXTTILING_BLOCK = 10  # sentences compared either side of a gap (NLTK's default block of 10 units)
TEXTTILING_SMOOTH = 3  # moving-average width over the gap scores
TEXTTILING_MIN_GAP = 3  # no two TextTiling boundaries closer than this (the deeper one wins)

Embed = Callable[[list[str]], np.ndarray]


# -- data and embeddings -------------------------------------------------------------------------
def load_records(input_path: Path | None) -> list[dict[str, Any]]:
    if input_path is None:
        from bench.segmentation_data import load_dev_set

        return [dict(r) for r in load_dev_set()]
    records = []
    with open(input_path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                records.append({"stream": str(r["stream"]), "text": str(r["text"]), "boundary": bool(r["boundary"])})
    return records


def _default_embedder_tag() -> str:
    from memstream.models.embedder import MODEL_NAME, EmbedderConfig

    config = EmbedderConfig()
    return f"{MODEL_NAME}-{config.variant}-{config.max_length}"


def default_embedder() -> tuple[Embed, str]:
    """The pipeline's embedder (`models.embedder`, default config) and a tag naming it for the cache."""
    from memstream.models.embedder import Embedder, EmbedderConfig

    return Embedder(EmbedderConfig()).embed, _default_embedder_tag()


def cached_embeddings(texts: list[str], embed: Embed | None = None, tag: str | None = None) -> np.ndarray:
    """Embeddings of ``texts``, cached under ``cache_dir()/eval`` by a hash of the embedder tag and texts.

    Without ``embed`` the default embedder is used (and only loaded when the cache misses).
    """
    from memstream.models.assets import cache_dir

    if tag is None:
        tag = _default_embedder_tag() if embed is None else "custom"
    digest = hashlib.sha256(("\x00".join([tag, *texts])).encode()).hexdigest()[:24]
    path = cache_dir() / "eval" / f"segmentation-{digest}.npy"
    if path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors
    if embed is None:
        embed, _ = default_embedder()
    vectors = np.asarray(embed(texts), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


def default_language_model():
    """The pipeline's language model (`models.language_model`, default config) and a tag naming it."""
    from memstream.models.language_model import LanguageModel, LanguageModelConfig

    model = LanguageModel(LanguageModelConfig())
    return model, model.tag


def compute_lm_surprises(
    streams: Sequence[Sequence[str]], config: SegmentationConfig, lm, batch: int = 16, progress: bool = True
) -> list[np.ndarray]:
    """Each stream's LM surprises as the segment stage computes them (`Segmenter.lm_surprises`): every
    event after its stream's last ``lm_context_tokens`` tokens, ``batch`` events of different streams per
    model call."""
    segmenter = Segmenter(config, lm=lm)
    states = [SessionState() for _ in streams]
    out = [np.full(len(texts), np.nan) for texts in streams]
    order = [
        (k, i)
        for i in range(max((len(t) for t in streams), default=0))
        for k in range(len(streams))
        if i < len(streams[k])
    ]
    t0 = time.perf_counter()
    for b in range(0, len(order), batch):
        chunk = order[b : b + batch]
        values = segmenter.lm_surprises([(states[k], streams[k][i]) for k, i in chunk])
        for (k, i), value in zip(chunk, values):
            out[k][i] = value
        if progress and (b // batch) % 50 == 0:
            done = b + len(chunk)
            rate = done / max(time.perf_counter() - t0, 1e-9)
            print(f"LM surprise: {done}/{len(order)} events, {rate:.1f}/s", file=sys.stderr, flush=True)
    return out


def lm_cache_path(streams: Sequence[Sequence[str]], config: SegmentationConfig, tag: str) -> Path:
    """Where `cached_lm_surprises` keeps the surprises of ``streams`` under the LM named ``tag`` (a flat
    float64 .npy, stream after stream; `bench.lm_cuda --surprises` writes the same on a GPU machine)."""
    from memstream.models.assets import cache_dir

    key = [tag, str(config.lm_context_tokens), config.lm_reduce, *("\x01".join(t) for t in streams)]
    digest = hashlib.sha256("\x00".join(key).encode()).hexdigest()[:24]
    return cache_dir() / "eval" / f"lm-surprise-{digest}.npy"


def cached_lm_surprises(
    streams: Sequence[Sequence[str]], config: SegmentationConfig, lm=None, tag: str | None = None
) -> list[np.ndarray]:
    """`compute_lm_surprises`, cached under ``cache_dir()/eval`` by the LM tag, context size, reduction
    and the streams' texts. Without ``lm`` the default language model is loaded."""
    if config.lm_score == "pmi":  # the same as the segmenter's one-call contrast, from two cacheable parts
        if lm is None:
            lm, _ = default_language_model()
        nll = config.model_copy(update={"lm_score": "nll"})
        with_context = cached_lm_surprises(streams, nll, lm, tag)
        alone = cached_lm_surprises(streams, nll.model_copy(update={"lm_context_tokens": 0}), lm, tag)
        return [a - b for a, b in zip(with_context, alone)]
    if lm is None:
        lm, _ = default_language_model()  # loads the graph (seconds), builds it once if missing
    if tag is None:
        tag = str(getattr(lm, "tag", type(lm).__name__))
    path = lm_cache_path(streams, config, tag)
    lengths = [len(t) for t in streams]
    if path.exists():
        flat = np.load(path)
        if flat.shape[0] == sum(lengths):
            return np.split(flat, np.cumsum(lengths)[:-1])
    values = compute_lm_surprises(streams, config, lm)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.npy")
    np.save(tmp, np.concatenate(values) if values else np.zeros(0))
    tmp.replace(path)
    return values


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


# -- metrics --------------------------------------------------------------------------------------
def _mask(boundaries: Sequence[int], n: int) -> str:
    marks = ["0"] * n
    for b in boundaries:
        if 0 < b < n:
            marks[b] = "1"
    return "".join(marks)


def window_k(gold: Sequence[int], n: int) -> int:
    """Half the mean gold segment length, at least 2 and below n."""
    return int(max(2, min(n - 1, round(n / (len(gold) + 1) / 2.0))))


def boundary_prf(pred: Sequence[int], gold: Sequence[int], tolerance: int = TOLERANCE) -> tuple[float, float, float]:
    """(precision, recall, F1) with ±tolerance matching, precision and recall matched separately."""
    p, g = np.asarray(sorted(set(pred)), dtype=np.int64), np.asarray(sorted(set(gold)), dtype=np.int64)
    if g.size == 0:
        return (1.0, 1.0, 1.0) if p.size == 0 else (0.0, 1.0, 0.0)
    if p.size == 0:
        return 0.0, 0.0, 0.0
    near = np.abs(p[:, None] - g[None, :]) <= tolerance
    precision, recall = float(near.any(1).mean()), float(near.any(0).mean())
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f1


def stream_metrics(pred: Sequence[int], gold: Sequence[int], n: int, tolerance: int = TOLERANCE) -> dict[str, float]:
    from nltk.metrics.segmentation import pk, windowdiff

    ref, hyp = _mask(gold, n), _mask(pred, n)
    k = window_k(gold, n)
    precision, recall, f1 = boundary_prf([b for b in pred if 0 < b < n], gold, tolerance)
    return {
        "pk": float(pk(ref, hyp, k=k, boundary="1")),
        "windowdiff": float(windowdiff(ref, hyp, k, boundary="1")),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


# -- methods --------------------------------------------------------------------------------------
def memstream_boundaries(
    vectors: np.ndarray, config: SegmentationConfig, texts: Sequence[str] = (), lm: np.ndarray | None = None
) -> list[int]:
    """Boundaries found by the streaming segmenter, fed one event at a time, then flushed. ``lm``: the
    events' LM surprises (`lm_surprises`), for LM and blend configs."""
    segmenter, state = Segmenter(config), SessionState()
    starts: list[int] = []
    for i, v in enumerate(vectors):
        text = texts[i] if texts else ""
        surprise = None if lm is None else float(lm[i])
        changes = segmenter.push(state, str(i), float(i), v, text, lm_surprise=surprise)
        starts += [int(c.event_ids[0]) for c in changes if c.kind == "sealed"]
    starts += [int(c.event_ids[0]) for c in segmenter.flush(state) if c.kind == "sealed"]
    return [s for s in starts if s > 0]


def gap_scores(vectors: np.ndarray, block: int = TEXTTILING_BLOCK, smooth: int = TEXTTILING_SMOOTH) -> np.ndarray:
    """TextTiling lexical-cohesion curve on embeddings: score[i-1] = cos(mean before gap i, mean after)."""
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    csum = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    scores = np.empty(max(n - 1, 0))
    for i in range(1, n):
        lo, hi = max(0, i - block), min(n, i + block)
        left, right = csum[i] - csum[lo], csum[hi] - csum[i]
        scores[i - 1] = left @ right / (np.linalg.norm(left) * np.linalg.norm(right) + 1e-12)
    if smooth > 1 and scores.size >= smooth:
        padded = np.pad(scores, (smooth // 2, smooth - 1 - smooth // 2), mode="edge")
        scores = np.convolve(padded, np.ones(smooth) / smooth, mode="valid")
    return scores


def depth_scores(scores: np.ndarray) -> np.ndarray:
    """Hearst's depth: how far the curve climbs to the nearest peak on each side of each gap."""
    n = scores.size
    depth = np.zeros(n)
    for i in range(n):
        left = i
        while left > 0 and scores[left - 1] >= scores[left]:
            left -= 1
        right = i
        while right < n - 1 and scores[right + 1] >= scores[right]:
            right += 1
        depth[i] = (scores[left] - scores[i]) + (scores[right] - scores[i])
    return depth


def _pick(order: np.ndarray, count: int | None, min_gap: int) -> list[int]:
    chosen: list[int] = []
    for gap in order:
        if count is not None and len(chosen) >= count:
            break
        if all(abs(int(gap) - c) >= min_gap for c in chosen):
            chosen.append(int(gap))
    return sorted(g + 1 for g in chosen)  # gap i-1 sits before record i


def texttiling_boundaries(vectors: np.ndarray, count: int | None = None) -> list[int]:
    """TextTiling over embeddings: valleys deeper than mean − std/2 of the valley depths, or, told
    ``count``, the ``count`` deepest valleys (then the deepest other gaps if valleys run out)."""
    if vectors.shape[0] < 3:
        return []
    scores = gap_scores(vectors)
    depth = depth_scores(scores)
    n = scores.size
    valley = np.array(
        [(i == 0 or scores[i] < scores[i - 1]) and (i == n - 1 or scores[i] <= scores[i + 1]) for i in range(n)]
    )
    valley &= depth > 0
    if count is None:
        if not valley.any():
            return []
        cutoff = depth[valley].mean() - depth[valley].std() / 2.0
        keep = np.flatnonzero(valley & (depth > cutoff))
        return _pick(keep[np.argsort(-depth[keep], kind="stable")], None, TEXTTILING_MIN_GAP)
    ranked = np.lexsort((-depth, ~valley))  # valleys first, deepest first
    return _pick(ranked, count, TEXTTILING_MIN_GAP)


def baseline_boundaries(method: str, vectors: np.ndarray, gold: Sequence[int], rng: np.random.Generator) -> list[int]:
    n = vectors.shape[0]
    if method == "none":
        return []
    if method == "random":
        return sorted(rng.choice(np.arange(1, n), size=min(len(gold), n - 1), replace=False).tolist())
    if method == "fixed":
        step = max(1, int(round(n / (len(gold) + 1))))
        return list(range(step, n, step))
    if method == "texttiling":
        return texttiling_boundaries(vectors)
    if method == "texttiling_oracle":
        return texttiling_boundaries(vectors, count=len(gold))
    raise ValueError(f"unknown method {method!r}")


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
    records = load_records(Path(input_path) if input_path is not None else None)
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
    predicted: dict[str, int] = {m: 0 for m in methods}
    seconds: dict[str, float] = {m: 0.0 for m in methods}
    weight = 0
    for s, e, gold in streams:
        n = e - s
        if n < 2:
            continue
        weight += n
        x = vectors[s:e]
        for method in methods:
            t = time.perf_counter()
            if method in configs:
                texts = [r["text"] for r in records[s:e]] if Segmenter(configs[method]).surprise.needs_text else ()
                values = lm_values[s:e] if configs[method].uses_lm else None
                pred = memstream_boundaries(x, configs[method], texts, values)
            else:
                pred = baseline_boundaries(method, x, gold, rng)
            seconds[method] += time.perf_counter() - t
            predicted[method] += len(pred)
            for name, value in stream_metrics(pred, gold, n, tolerance).items():
                totals[method][name] = totals[method].get(name, 0.0) + n * value
    metrics = ("f1", "pk", "windowdiff", "precision", "recall")
    out: dict[str, Any] = {name: {m: round(totals[m][name] / weight, 4) for m in methods} for name in metrics}
    out["boundaries"] = predicted
    out["data"] = {
        "streams": len(streams),
        "records": len(records),
        "gold_boundaries": sum(len(g) for _, _, g in streams),
        "tolerance": tolerance,
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


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else None), indent=2))
