"""A session's correlation length: grows with its topics' length, unknown before any structure shows, and
selects the block scales around it."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.models.correlation_length import MAX_LAG, CorrelationSums, correlation_length, select_scales
from memstream.models.segmenter import Segmenter
from memstream.models.session_state import SessionState


def drifting_topics(lengths: list[int], dim: int = 48, step: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors that drift a little from turn to turn within a topic (as text does) and jump between
    topics."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in lengths:
        v = rng.normal(size=dim)
        for _ in range(n):
            v = v / np.linalg.norm(v) + step * rng.normal(size=dim) / np.sqrt(dim)
            rows.append(v / np.linalg.norm(v))
    return np.asarray(rows, dtype=np.float32)


def sums_of(x: np.ndarray) -> CorrelationSums:
    sums = CorrelationSums()
    for i, v in enumerate(x):
        sums.add(v, x[max(0, i - MAX_LAG) : i])
    return sums


def test_longer_topics_give_a_longer_correlation_length() -> None:
    taus = {}
    for length in (3, 8, 30):
        x = drifting_topics([length] * (240 // length), seed=length)
        taus[length] = correlation_length(sums_of(x))
    assert taus[3] is not None and taus[8] is not None and taus[30] is not None, taus
    assert taus[3] < taus[8] < taus[30], taus
    assert taus[3] < 3.0 and taus[30] > 8.0, taus


def test_unknown_before_any_structure_shows() -> None:
    rng = np.random.default_rng(1)
    centre = rng.normal(size=48)
    one_topic = centre + 0.8 * rng.normal(size=(30, 48))  # i.i.d. around one centre: nothing to measure
    one_topic /= np.linalg.norm(one_topic, axis=1, keepdims=True)
    assert correlation_length(sums_of(one_topic.astype(np.float32))) is None
    assert correlation_length(sums_of(drifting_topics([2]))) is None  # too few events
    assert correlation_length(CorrelationSums()) is None


@pytest.mark.parametrize(
    ("tau", "expected"),
    [(1.7, (1, 2)), (3.6, (2, 4)), (8.0, (4, 8, 16)), (100.0, (16,)), (None, (1, 2, 4, 8, 16)), (0.3, (1,))],
)
def test_scales_within_the_band_or_the_nearest(tau: float | None, expected: tuple[int, ...]) -> None:
    assert select_scales((1, 2, 4, 8, 16), tau, 0.5, 2.0) == expected


def test_sums_survive_the_state_bytes_exactly() -> None:
    x = drifting_topics([5, 7, 6], seed=3)
    seg, state = Segmenter(), SessionState()
    for i, v in enumerate(x):
        seg.push(state, f"e{i}", float(i), v)
    again = SessionState.from_bytes(state.to_bytes())
    assert again.correlation.count == state.correlation.count == len(x)
    np.testing.assert_array_equal(again.correlation.vector_sum, state.correlation.vector_sum)
    assert again.correlation.lag_sums == state.correlation.lag_sums
    assert again.correlation.lag_counts == state.correlation.lag_counts
    assert correlation_length(again.correlation) == correlation_length(state.correlation)
