"""LM surprise in the segmenter, with a small deterministic token scorer standing in for the ONNX model
(the model itself is tested in test_language_model.py)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
import pytest

from memstream.models.segmentation_config import SegmentationConfig
from memstream.models.segmenter import Segmenter
from memstream.models.session_state import SessionState
from memstream.models.surprise import LanguageModelSurprise, SurpriseContext, reduce_nll


class WordScorer:
    """Token = word; a word already in the context (or earlier in the text) costs 0.1 nats, a new one 5."""

    def __init__(self) -> None:
        self.calls: list[int] = []  # requests per nll() call

    def tokenize(self, text: str) -> list[int]:
        if text == "\n":
            return [0]
        return [zlib.crc32(w.encode()) for w in text.split()]

    def nll(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[np.ndarray]:
        self.calls.append(len(requests))
        out = []
        for context, tokens in requests:
            seen, values = set(context), []
            for t in tokens:
                values.append(0.1 if t in seen else 5.0)
                seen.add(t)
            out.append(np.array(values))
        return out


def topics(lengths: Sequence[int], seed: int = 0) -> list[str]:
    """Sentences drawn from disjoint vocabularies, one per topic."""
    rng = np.random.default_rng(seed)
    texts = []
    for k, n in enumerate(lengths):
        words = [f"t{k}w{i}" for i in range(12)]
        texts += [" ".join(rng.choice(words, size=5)) for _ in range(n)]
    return texts


def sealed_starts(changes) -> list[int]:
    return [int(c.event_ids[0]) for c in changes if c.kind == "sealed"]


def test_reduce_nll() -> None:
    x = np.array([1.0, 2.0, 6.0])
    assert (reduce_nll(x, "mean"), reduce_nll(x, "sum"), reduce_nll(x, "max")) == (3.0, 9.0, 6.0)
    assert math.isnan(reduce_nll(np.zeros(0)))
    with pytest.raises(ValueError):
        reduce_nll(x, "median")  # type: ignore[arg-type]


def test_context_truncation_respects_c() -> None:
    lm = LanguageModelSurprise(WordScorer(), context_tokens=4)
    context = lm.context_of(["a b c", "d e f"])
    # exactly the latest C ids: "...c \n d e f \n" -> [\n, d, e, f, \n][-4:]
    assert context == [lm.tokens("d")[0], lm.tokens("e")[0], lm.tokens("f")[0], 0]
    # a context longer than C passed in by a caller is cut to its latest C ids
    scorer = WordScorer()
    lm = LanguageModelSurprise(scorer, context_tokens=2)
    far, near = scorer.tokenize("x"), scorer.tokenize("y z")
    assert lm.score_tokens([([*far, *near], scorer.tokenize("x"))])[0] == 5.0  # x fell out of the context
    assert lm.score_tokens([([*far, *near], scorer.tokenize("z"))])[0] == pytest.approx(0.1)
    assert LanguageModelSurprise(scorer, context_tokens=0).context_of(["a b"]) == []


def test_repeating_the_context_is_less_surprising() -> None:
    lm = LanguageModelSurprise(WordScorer(), context_tokens=64)
    context = SurpriseContext(np.zeros((2, 4), np.float32), ("the cat sat", "on the mat"))
    same, other = lm.score(np.zeros((2, 4), np.float32), ["the cat sat on the mat", "quantum flux rises"], context)
    assert same < other
    pmi = LanguageModelSurprise(WordScorer(), context_tokens=64, contrast=True)
    same, other = pmi.score(np.zeros((2, 4), np.float32), ["the cat sat on the mat", "quantum flux rises"], context)
    assert same < 0 == other  # the context helps the repeat; nothing helps the off-topic text


def test_lm_config_needs_a_model() -> None:
    seg = Segmenter(SegmentationConfig(surprise="lm"))
    with pytest.raises(ValueError, match="language model"):
        seg.push(SessionState(), "a", 0.0, np.ones(4), "hello")
    # given the surprise from outside, no model is needed
    assert seg.push(SessionState(), "a", 0.0, np.ones(4), "hello", lm_surprise=3.0)[0].kind == "opened"


@pytest.mark.parametrize("surprise", ["lm", "blend"])
def test_lm_surprise_finds_topic_changes(surprise: str) -> None:
    texts = topics([20, 20, 20])
    config = SegmentationConfig(surprise=surprise, refine="none", min_len=4, warmup=4, ahead=4, max_context=6)
    # vectors carry no signal for "lm"; for "blend" they agree with the texts
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16))
    vectors = [centres[i // 20] + (0.3 if surprise == "blend" else 9.0) * rng.normal(size=16) for i in range(60)]
    seg, state = Segmenter(config, lm=WordScorer()), SessionState()
    changes = [c for i, t in enumerate(texts) for c in seg.push(state, str(i), float(i), vectors[i], t)]
    changes += seg.flush(state)
    starts = sealed_starts(changes)
    assert any(abs(s - 20) <= 2 for s in starts) and any(abs(s - 40) <= 2 for s in starts), starts
    assert len(starts) <= 6, starts
    assert len(state.lm_context) <= config.lm_context_tokens


def test_batched_surprises_equal_one_by_one_and_survive_round_trips() -> None:
    """Sessions interleaved in batches (one model call per batch) give what pushing one by one gives."""
    config = SegmentationConfig(
        surprise="blend", refine="modularity", min_len=3, warmup=3, ahead=3, graph_context=4, lm_context_tokens=9
    )
    streams = {k: topics([9, 7, 11], seed=k) for k in range(3)}
    rng = np.random.default_rng(2)
    vectors = {k: rng.normal(size=(len(t), 8)) for k, t in streams.items()}

    def one_by_one(k: int):
        seg, state = Segmenter(config, lm=WordScorer()), SessionState()
        out = [c for i, t in enumerate(streams[k]) for c in seg.push(state, str(i), float(i), vectors[k][i], t)]
        return out + seg.flush(state), state

    scorer = WordScorer()
    seg = Segmenter(config, lm=scorer)
    states = {k: SessionState() for k in streams}
    got: dict[int, list] = {k: [] for k in streams}
    order = [(k, i) for i in range(max(map(len, streams.values()))) for k in streams if i < len(streams[k])]
    for b in range(0, len(order), 5):  # batches mixing sessions, several events of one session per batch
        batch = order[b : b + 5]
        states = {k: SessionState.from_bytes(s.to_bytes()) for k, s in states.items()}  # a restart between batches
        scores = seg.lm_surprises([(states[k], streams[k][i]) for k, i in batch])
        for (k, i), score in zip(batch, scores):
            got[k] += seg.push(states[k], str(i), float(i), vectors[k][i], streams[k][i], lm_surprise=score)
    # one model call per batch: 5 events after their context, and (pmi) the same 5 without
    assert len(scorer.calls) == math.ceil(len(order) / 5) and max(scorer.calls) == 10
    for k in streams:
        got[k] += seg.flush(states[k])
        expected, final = one_by_one(k)
        assert [(c.kind, c.event_ids) for c in got[k]] == [(c.kind, c.event_ids) for c in expected]
        assert states[k].lm_context == final.lm_context
