"""LM surprises of the segmentation evaluation's streams, computed as the segment stage computes them and
cached under ``cache_dir()/eval``.

Reading every event after 128 tokens of context takes about an hour for the whole dev set on 2 CPU cores,
so the surprises are cached by the LM tag, context size, reduction and the streams' texts;
`bench.lm_cuda --surprises` computes the same file on a GPU machine.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memstream.models.segmentation_config import SegmentationConfig
from memstream.models.segmenter import Segmenter
from memstream.models.session_state import SessionState

__all__ = ["cached_lm_surprises", "compute_lm_surprises", "default_language_model", "lm_cache_path"]


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
