"""Streaming segmenter: finds topic shifts, bounded state, same episodes whatever the push/restart split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memstream.models.segmentation_config import SegmentationConfig
from memstream.models.segmenter import EpisodeChange, Segmenter
from memstream.models.session_state import SessionState


def topic_stream(lengths: list[int], dim: int = 48, noise: float = 0.6, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Unit vectors around one random centre per topic; returns vectors and the gold boundaries."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(lengths), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = [centres[i] + noise * rng.normal(size=dim) / np.sqrt(dim) for i, n in enumerate(lengths) for _ in range(n)]
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), list(np.cumsum(lengths)[:-1])


def run(
    seg: Segmenter, x: np.ndarray, cuts: frozenset[int] | set[int] = frozenset(), questions: bool = False
) -> list[EpisodeChange]:
    """Push every row; at each index in ``cuts`` round-trip the state through bytes (a restart). With
    ``questions`` every fifth text asks something (the reply cue's acts go through the restarts too)."""
    state = SessionState()
    changes: list[EpisodeChange] = []
    for i, v in enumerate(x):
        if i in cuts:
            state = SessionState.from_bytes(state.to_bytes())
        changes += seg.push(state, f"e{i}", float(i), v, text=f"t{i} ?" if questions and i % 5 == 2 else f"t{i}")
        assert len(state) <= seg.config.state_bound
        assert len(state.history) <= seg.config.window
    return changes + seg.flush(state)


def sealed(changes: list[EpisodeChange]) -> list[EpisodeChange]:
    return [c for c in changes if c.kind == "sealed"]


def starts(changes: list[EpisodeChange]) -> list[int]:
    return [int(c.event_ids[0][1:]) for c in sealed(changes)][1:]


CONFIGS = [
    SegmentationConfig(),  # symmetric likelihood ratio of look-back vs look-ahead, modularity refinement
    # EM-LLM as published: per-event surprise against the current episode, first crossing
    SegmentationConfig(
        context="episode", score="surprise", ahead=1, peak_wait=0, half_life=8.0, graph_context=6, min_len=6
    ),
    SegmentationConfig(
        embedding_surprise="gaussian", refine="conductance", score="contrast", ahead=4, graph_context=6, min_len=5
    ),
    SegmentationConfig(
        embedding_surprise="cosine",
        refine="none",
        context="episode",
        ahead=3,
        max_context=30,
        score="symmetric",
        min_len=6,
    ),
    SegmentationConfig(score="symmetric", ahead=12, max_context=12, min_len=6),  # the default until 2026-12
]


@pytest.mark.parametrize("config", CONFIGS)
def test_finds_topic_shifts(config: SegmentationConfig) -> None:
    x, gold = topic_stream([14, 20, 12, 25, 16, 18, 15], seed=1)
    found = starts(run(Segmenter(config), x))
    hits = sum(any(abs(f - g) <= 2 for f in found) for g in gold)
    assert hits >= len(gold) - 1, (found, gold)
    assert len(found) <= len(gold) + 2, (found, gold)


@pytest.mark.parametrize("config", CONFIGS)
def test_episodes_partition_the_stream(config: SegmentationConfig) -> None:
    x, _ = topic_stream([10, 30, 8, 70, 12], seed=2)
    changes = run(Segmenter(config), x)
    eps = sealed(changes)
    assert [c.episode_index for c in eps] == list(range(len(eps)))
    ids = [i for c in eps for i in c.event_ids]
    assert ids == [f"e{i}" for i in range(len(x))]
    for c in eps[:-1]:
        assert config.min_len <= len(c.event_ids) <= config.max_len
    for c in eps:
        members = x[[int(i[1:]) for i in c.event_ids]].mean(0)
        assert c.centroid is not None and c.centroid.dtype == np.float32
        np.testing.assert_allclose(c.centroid, members / np.linalg.norm(members), atol=1e-3)  # float16 state
        assert c.start_ts == float(c.event_ids[0][1:]) and c.end_ts == float(c.event_ids[-1][1:])
    opened = [c for c in changes if c.kind == "opened"]
    assert [c.episode_index for c in opened] == list(range(len(eps)))
    # every episode is announced opened before it is sealed
    pos = {(c.kind, c.episode_index): k for k, c in enumerate(changes)}
    assert all(pos[("opened", i)] < pos[("sealed", i)] for i in range(len(eps)))


@pytest.mark.parametrize("config", CONFIGS)
def test_same_episodes_whatever_the_restarts(config: SegmentationConfig) -> None:
    x, _ = topic_stream([9, 22, 13, 40, 11, 17], seed=3)
    seg = Segmenter(config)
    reference = run(seg, x, questions=True)
    rng = np.random.default_rng(0)
    for _ in range(4):
        cuts = set(rng.choice(len(x), size=rng.integers(1, 30), replace=False).tolist())
        again = run(seg, x, cuts, questions=True)
        assert [(c.kind, c.episode_index, c.event_ids) for c in again] == [
            (c.kind, c.episode_index, c.event_ids) for c in reference
        ]
        for a, b in zip(sealed(again), sealed(reference), strict=True):
            np.testing.assert_array_equal(a.centroid, b.centroid)


def test_sealed_within_lookahead_of_the_boundary() -> None:
    config = SegmentationConfig()
    x, _ = topic_stream([15, 15, 15, 15], seed=4)
    seg, state = Segmenter(config), SessionState()
    for i, v in enumerate(x):
        for c in seg.push(state, f"e{i}", float(i), v):
            if c.kind == "sealed":
                closing = int(c.event_ids[-1][1:]) + 1  # first event after the sealed episode
                assert i - closing <= config.lookahead + config.radius


def test_max_len_cuts_a_monotonous_stream() -> None:
    config = SegmentationConfig(max_len=20, min_len=4)
    x, _ = topic_stream([100], seed=5, noise=0.3)
    eps = sealed(run(Segmenter(config), x))
    assert len(eps) >= 5 and all(len(c.event_ids) <= 20 for c in eps)


def test_state_is_json_and_float32_bytes() -> None:
    x, _ = topic_stream([12, 12], seed=6)
    seg, state = Segmenter(), SessionState()
    for i, v in enumerate(x):
        seg.push(state, f"e{i}", float(i), v)
    data = state.to_dict()
    json.dumps(data)
    assert data["dim"] == 48 and len(data["ids"]) == len(state)
    back = SessionState.from_dict(data)
    np.testing.assert_array_equal(back.vectors, state.vectors)
    assert back.vectors.dtype == np.float32
    assert len(state.to_bytes()) < 48 * 4 * 2 * seg.config.state_bound + 4096


def test_state_without_vectors_takes_them_back_by_event_id() -> None:
    x, _ = topic_stream([12, 12, 12], seed=7)
    seg, state = Segmenter(), SessionState()
    stored: dict[str, bytes] = {}  # a vector store keyed by event id, as the segment stage keeps one
    for i, v in enumerate(x):
        seg.push(state, f"e{i}", float(i), v)
        for j, event_id in enumerate(state.ids):
            stored.setdefault(event_id, state.vector_bytes(j))
    head = state.to_bytes(vectors=False)
    assert len(head) == len(state.to_bytes()) - len(state) * 48 * 2  # the vectors are all that is left out
    asked: list[list[str]] = []

    def vectors(ids: list[str]) -> bytes:
        asked.append(ids)
        return b"".join(stored[i] for i in ids)

    back = SessionState.from_bytes(head, vectors)
    assert asked == [state.ids]
    np.testing.assert_array_equal(back.vectors, state.vectors)
    assert back.to_bytes() == state.to_bytes()
    with pytest.raises(ValueError, match="without its vectors"):
        SessionState.from_bytes(head)
    assert SessionState.from_bytes(SessionState().to_bytes(vectors=False)).ids == []  # nothing to fetch


def test_a_state_whose_vectors_were_lost_goes_on_with_the_next_events() -> None:
    """Nothing buffered comes back; the scales' values restart with the new events instead of being
    misaligned with them, and the later events are all sealed, in order."""
    x, _ = topic_stream([10, 10, 10, 10], seed=8)
    seg, state = Segmenter(), SessionState()
    for i, v in enumerate(x[:20]):
        seg.push(state, f"e{i}", float(i), v)
    back = SessionState.from_bytes(state.to_bytes(vectors=False), lambda ids: None)
    assert back.ids == [] and back.scale_values == [] and back.seen == 20
    out = [c for i, v in enumerate(x[20:], start=20) for c in seg.push(back, f"e{i}", float(i), v)]
    out += seg.flush(back)
    assert [i for c in sealed(out) for i in c.event_ids] == [f"e{i}" for i in range(20, 40)]
    assert all(f + len(v) <= back.seen for f, v in zip(back.scale_from, back.scale_values))


def test_flush_seals_all_and_the_session_goes_on() -> None:
    x, _ = topic_stream([10, 10], seed=7)
    seg, state = Segmenter(), SessionState()
    first = [c for i, v in enumerate(x[:10]) for c in seg.push(state, f"a{i}", float(i), v)]
    closed = seg.flush(state)
    assert len(state) == 0 and closed[-1].kind == "sealed"
    assert [i for c in sealed(first + closed) for i in c.event_ids] == [f"a{i}" for i in range(10)]
    assert seg.flush(state) == []
    later = [c for i, v in enumerate(x[10:]) for c in seg.push(state, f"b{i}", 10.0 + i, v)]
    assert later[0].kind == "opened" and later[0].episode_index == closed[-1].episode_index + 1


def test_rejects_other_dimensions_and_bad_configs() -> None:
    seg, state = Segmenter(), SessionState()
    seg.push(state, "a", 0.0, np.ones(8))
    with pytest.raises(ValueError):
        seg.push(state, "b", 1.0, np.ones(9))
    with pytest.raises(ValueError):
        SegmentationConfig(min_len=10, max_len=5)
    with pytest.raises(ValueError):
        SegmentationConfig(radius=8, graph_context=8)


def test_a_text_surprise_keeps_texts() -> None:
    class Novelty:
        name = "novelty"
        needs_text = True

        def score(self, vectors, texts, context):
            seen = {w for t in context.texts for w in t.split()}
            return np.array([float(np.mean([w not in seen for w in t.split()])) for t in texts])

    config = SegmentationConfig(refine="none", ahead=1, min_len=2, warmup=3, score="symmetric")
    seg, state = Segmenter(config, Novelty()), SessionState()
    words = ["a b", "a b", "b a", "a a", "b b", "x y", "y x", "x x", "y y", "x y"]
    changes = [c for i, w in enumerate(words) for c in seg.push(state, str(i), float(i), np.ones(4), w)]
    changes += seg.flush(state)
    assert [c.event_ids[0] for c in sealed(changes)] == ["0", "5"]


def test_lookahead_score_waits_for_the_peak() -> None:
    # one odd event inside a topic is not a lasting change: the look-ahead score ignores it
    x, gold = topic_stream([30, 30], seed=8, noise=0.5)
    rng = np.random.default_rng(9)
    odd = rng.normal(size=48).astype(np.float32)
    x[15] = odd / np.linalg.norm(odd)
    config = SegmentationConfig(refine="none", score="symmetric", ahead=12, max_context=12, min_len=6)
    found = starts(run(Segmenter(config), x))
    assert found == gold


def test_config_bounds() -> None:
    c = SegmentationConfig()
    assert c.lookahead == max(c.ahead + c.peak_wait, c.graph_context) - 1
    assert c.state_bound == c.max_len + c.lookahead
    e = SegmentationConfig(context="episode", refine="none", ahead=1, peak_wait=0, score="surprise")
    assert e.lookahead == 0 and e.state_bound == e.max_len


@pytest.mark.parametrize("seed", range(int(__import__("os").environ.get("SEG_SEEDS", "6"))))
def test_random_configs_keep_the_contract(seed: int) -> None:
    """Bound, partition and restart-invariance over random configs, including idle flushes mid-stream."""
    rng = np.random.default_rng(100 + seed)
    min_len = int(rng.integers(1, 6))
    ahead = int(rng.integers(1, 8))
    peak_wait = int(rng.integers(0, 4))
    max_len = int(rng.integers(min_len + 1, 25))
    reach = min(min_len + peak_wait, max_len) + ahead
    radius = int(rng.integers(0, min(3, reach, max_len)))
    max_context = int(rng.integers(1, 12))
    score = str(rng.choice(["surprise", "contrast", "symmetric", "multiscale"]))
    top = min(ahead, max_context)
    scales = tuple(sorted({int(w) for w in rng.integers(1, top + 1, size=3)}))
    config = SegmentationConfig(
        embedding_surprise=str(rng.choice(["vmf", "cosine", "gaussian"])),
        context=str(rng.choice(["episode", "recent"])),
        score=score,
        scales=scales,
        z_threshold=float(rng.uniform(0.5, 2.0)),
        max_context=max_context,
        ahead=ahead,
        peak_wait=peak_wait,
        gamma=float(rng.uniform(0.0, 2.0)),
        window=int(rng.integers(2, 30)),
        warmup=2,
        min_len=min_len,
        max_len=max_len,
        refine=str(rng.choice(["modularity", "conductance", "none"])),
        radius=radius,
        graph_context=int(rng.integers(radius + 1, reach + 1)),
    )
    x, _ = topic_stream(list(rng.integers(3, 30, size=6)), dim=16, seed=seed)
    flush_at = set(rng.choice(len(x), size=2, replace=False).tolist())
    times = np.cumsum(rng.choice([1.0, 5.0, 4000.0], p=[0.6, 0.37, 0.03], size=len(x)))  # a few long pauses
    seg = Segmenter(config)

    def go(cuts: set[int]) -> list[tuple]:
        state, out = SessionState(), []
        for i, v in enumerate(x):
            if i in cuts:
                state = SessionState.from_bytes(state.to_bytes())
            if i in flush_at:
                out += seg.flush(state)
            out += seg.push(state, f"e{i}", float(times[i]), v, text="?" if i % 3 == 0 else "")
            assert len(state) <= config.state_bound
        out += seg.flush(state)
        eps = sealed(out)
        assert [i for c in eps for i in c.event_ids] == [f"e{i}" for i in range(len(x))]
        assert [c.episode_index for c in eps] == list(range(len(eps)))
        assert all(len(c.event_ids) <= config.max_len for c in eps)
        return [(c.kind, c.episode_index, tuple(c.event_ids)) for c in out]

    reference = go(set())
    assert go(set(range(len(x)))) == reference
    assert go(set(rng.choice(len(x), size=10, replace=False).tolist())) == reference


def _synthetic_errors(length: int) -> tuple[int, int, int]:
    """(gold boundaries, gold ones missed by more than ±1, found ones farther than ±1 from any gold one)
    of the default config over five streams of ``length``-event topics."""
    total = missed = extra = 0
    for seed in range(5):
        x, gold = topic_stream([length] * (60 // length if length < 40 else 5), seed=20 + seed)
        found = starts(run(Segmenter(), x))
        missed += sum(not any(abs(f - g) <= 1 for f in found) for g in gold)
        extra += sum(not any(abs(f - g) <= 1 for g in gold) for f in found)
        total += len(gold)
    return total, missed, extra


@pytest.mark.xfail(
    reason="not met yet (2026-12-04): 5-event topics lose 13 of 55 boundaries. These synthetic topics are i.i.d. "
    "noise around a centre, with no turn-to-turn coherence, so the correlation length comes out ~4 (real text "
    "with 5-turn topics: ~1.7) and the session uses scales 2-8, whose 8-event blocks straddle the next boundary. "
    "40-event topics get 1 extra cut in 20 (a noise peak early in a session, before its scale shows)",
    strict=False,
)
@pytest.mark.parametrize("length", [5, 40])
def test_one_default_config_finds_short_and_long_topics_exactly(length: int) -> None:
    """The issue's check: one default config, 5-event and 40-event topics, every boundary within ±1."""
    assert _synthetic_errors(length)[1:] == (0, 0)


@pytest.mark.parametrize(("length", "most_missed", "most_extra"), [(5, 0.25, 0.05), (40, 0.0, 0.1)])
def test_one_default_config_finds_short_and_long_topics(length: int, most_missed: float, most_extra: float) -> None:
    """What holds today (see the xfail above): no 40-event boundary missed and at most 2 extra in 20; no
    5-event extras, at most a quarter missed."""
    total, missed, extra = _synthetic_errors(length)
    assert missed <= most_missed * total and extra <= most_extra * total, (total, missed, extra)


def test_no_second_cut_just_after_a_boundary() -> None:
    """A boundary is a peak of the score: the events just after a topic shift, whose larger scales' look-back
    still spans it, score high too but open no episode of their own."""
    for seed in range(5):
        x, gold = topic_stream([40] * 5, seed=20 + seed)
        found = starts(run(Segmenter(), x))
        assert not [f for f in found for g in gold if 0 < f - g <= 4], (seed, found)


def test_a_long_pause_opens_an_episode() -> None:
    # one topic throughout: only the pause can cut it; messages a minute apart, then three hours of silence
    x, _ = topic_stream([30], seed=11, noise=0.3)
    times = [60.0 * i + (3 * 3600.0 if i >= 17 else 0.0) for i in range(30)]
    seg, state = Segmenter(), SessionState()
    changes: list[EpisodeChange] = []
    for i, v in enumerate(x):
        step = seg.push(state, f"e{i}", times[i], v)
        if i == 17:  # sealed at once, before the new episode opens
            assert [c.kind for c in step][-2:] == ["sealed", "opened"] and step[-1].event_ids == ["e17"]
        changes += step
    changes += seg.flush(state)
    assert 17 in starts(changes)
    # a session whose every pause is long is not cut at each one: pauses are judged against its own median
    days = [86400.0 * i for i in range(30)]
    minutes = [60.0 * i for i in range(30)]
    # (only the first pause, with no typical pause to judge it by yet, opens an episode)
    assert [b for b in starts(run_at(Segmenter(), x, days)) if b != 1] == starts(run_at(Segmenter(), x, minutes))
    assert 17 not in starts(run_at(Segmenter(), x, minutes))
    # restarts around the pause, from bytes (also through the version 2 format), give the same episodes
    again = run_at(Segmenter(), x, times, cuts={5, 17, 18})
    assert [(c.kind, c.event_ids) for c in again] == [(c.kind, c.event_ids) for c in changes]


def run_at(
    seg: Segmenter, x: np.ndarray, times: list[float], cuts: frozenset[int] = frozenset()
) -> list[EpisodeChange]:
    state = SessionState()
    changes: list[EpisodeChange] = []
    for i, v in enumerate(x):
        if i in cuts:
            state = SessionState.from_bytes(state.to_bytes())
        changes += seg.push(state, f"e{i}", times[i], v)
    return changes + seg.flush(state)


@pytest.mark.parametrize("version", [2, 3])
def test_an_older_state_is_still_read(version: int) -> None:
    """A version 2 state (no per-scale values, latest ts or pauses) or 3 (past per-scale values only, no
    correlation sums or acts) is read; what it lacks starts afresh, and the session goes on to its end."""
    x, _ = topic_stream([12, 12], seed=12)
    seg, state = Segmenter(), SessionState()
    for i, v in enumerate(x[:10]):
        seg.push(state, f"e{i}", 60.0 * i, v, text=f"t{i}?")
    header = state._header()
    for key in ("scale_values", "scale_from", "acts", "correlation"):
        del header[key]
    if version == 2:
        del header["last_ts"], header["gaps"]
    else:
        header["scale_history"] = [[0.1, 0.2]] * len(seg.config.scales)  # version 3's field, no longer used
    header["v"] = version
    old = SessionState._load(header, state.vector_bytes())
    assert old.scale_values == [] and old.acts == [] and old.correlation.count == 0
    assert (old.last_ts is None and old.gaps == []) if version == 2 else old.last_ts == state.last_ts
    assert old.ids == state.ids
    out = [c for i, v in enumerate(x[10:], start=10) for c in seg.push(old, f"e{i}", 60.0 * i, v, text=f"t{i}")]
    out += seg.flush(old)
    assert [i for c in sealed(out) for i in c.event_ids][-1] == "e23"


def test_a_short_session_is_segmented_from_its_start() -> None:
    """Twelve events, three 4-event topics: each scale's reference includes the look-ahead the decision
    waits for, and the session's correlation length picks the small scales. The same stream with every
    scale averaged and no correlation length finds nothing."""
    for seed in range(3):
        x, gold = topic_stream([4, 4, 4], seed=seed)
        assert starts(run(Segmenter(), x)) == gold
        assert starts(run(Segmenter(SegmentationConfig(scale_select="all")), x)) == []


def test_a_question_and_its_answer_stay_in_one_episode() -> None:
    """The topic's vectors change at event 4, which answers the question at 3. With the reply cue the
    episode opens at the question; without it, at the answer."""

    def starts_with(config: SegmentationConfig, x: np.ndarray, texts: list[str]) -> list[int]:
        seg, state, out = Segmenter(config), SessionState(), []
        for i, v in enumerate(x):
            out += seg.push(state, f"e{i}", float(i), v, text=texts[i])
        return starts(out + seg.flush(state))

    texts = ["so it goes ."] * 12
    texts[3] = "and what about the weekend ?"
    for seed in range(3):
        x, _ = topic_stream([4, 4, 4], seed=seed)
        assert starts_with(SegmentationConfig(), x, texts) == [3, 8]
        assert starts_with(SegmentationConfig(reply_cue=False), x, texts) == [4, 8]


def test_a_session_s_conversations_set_its_episodes_scale() -> None:
    """Four 12-message conversations three hours apart, each with two 6-message topics. The pauses open the
    episodes, and once the session has shown its conversations, a topic shift inside a typical-length one
    does not cut it. With the pause rule off, the same topics are cut inside conversations."""
    for seed in range(4):
        x, _ = topic_stream([6] * 8, seed=seed)
        times = [60.0 * i + 3 * 3600.0 * (i // 12) for i in range(48)]
        assert starts(run_at(Segmenter(), x, times)) == [12, 24, 36]
        assert starts(run_at(Segmenter(), x, times, cuts=frozenset({13, 25, 30}))) == [12, 24, 36]
        without = starts(run_at(Segmenter(SegmentationConfig(gap_s=0.0)), x, times))
        assert [b for b in without if b % 12], without
