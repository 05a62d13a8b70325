"""The mean + gamma·std boundary rule, warm-up and min/max episode length."""

from __future__ import annotations

import math

import numpy as np

from memstream.models.boundaries import detect_boundaries, exceeds, threshold


def test_threshold_is_mean_plus_gamma_std() -> None:
    h = [1.0, 2.0, 3.0, 4.0]
    assert math.isclose(threshold(h, 0.0), 2.5)
    assert math.isclose(threshold(h, 2.0), 2.5 + 2 * float(np.std(h)))


def test_warmup_means_no_threshold() -> None:
    assert threshold([], 1.0) == math.inf
    assert threshold([5.0], 1.0, warmup=2) == math.inf
    assert not exceeds(1e9, [1.0, 2.0], 1.0, warmup=3)
    assert exceeds(1e9, [1.0, 2.0, 3.0], 1.0, warmup=3)


def test_spikes_are_boundaries() -> None:
    scores = np.ones(40)
    scores[::2] += 0.01  # a little noise so std > 0
    scores[[10, 25]] = 5.0
    assert detect_boundaries(scores, gamma=2.0, window=8) == [10, 25]


def test_min_len_suppresses_close_spikes() -> None:
    scores = np.ones(30) + 0.01 * (np.arange(30) % 2)
    scores[[10, 12, 20]] = 5.0
    assert detect_boundaries(scores, gamma=2.0, window=8, min_len=5) == [10, 20]


def test_max_len_forces_cuts() -> None:
    scores = np.ones(25) + 0.01 * (np.arange(25) % 2)
    assert detect_boundaries(scores, gamma=3.0, window=8, max_len=10) == [10, 20]


def test_window_forgets_old_levels() -> None:
    # a level shift is a boundary once, then the window adapts to the new level
    scores = np.concatenate([np.ones(20), 4 * np.ones(20)]) + 0.01 * (np.arange(40) % 2)
    assert detect_boundaries(scores, gamma=2.0, window=5, min_len=2) == [20]
