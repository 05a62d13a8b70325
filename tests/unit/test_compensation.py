"""ReLoop2 compensation maths: hand-computed example, identities, direction, key construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from memstream.models.compensation import (
    CompensationConfig,
    NeighbourEstimate,
    compensate,
    error_estimate,
    feature_key,
    hashed_vector,
    identity_key,
    softmax_weights,
    weighted_estimate,
)


def test_hand_computed_example() -> None:
    # two neighbours, cosine 0.9 and 0.7, τ = 0.1 → logits 9 and 7 → weights e²/(1+e²), 1/(1+e²)
    cfg = CompensationConfig(tau=0.1, gamma=0.5, lam=0.5)
    est = weighted_estimate(np.array([0.9, 0.7]), np.array([1.0, 0.0]), np.array([0.6, 0.2]), cfg.tau, ["a", "b"])
    w1 = math.e**2 / (1 + math.e**2)
    w2 = 1 - w1
    y_bar = w1 * 1.0 + w2 * 0.0  # 0.880797
    p_bar = w1 * 0.6 + w2 * 0.2  # 0.552319
    assert est is not None
    assert est.label_mean == pytest.approx(y_bar)
    assert est.prediction_mean == pytest.approx(p_bar)
    assert est.support == 2 and est.neighbour_ids == ("a", "b")

    y_err = 0.5 * (y_bar - 0.5) + 0.5 * (y_bar - p_bar)  # 0.354638
    out = compensate(0.5, est, cfg)
    assert out.y_err == pytest.approx(y_err)
    assert out.y == pytest.approx(0.5 + 0.5 * y_err)  # 0.677319
    assert out.y == pytest.approx(0.677319, abs=1e-6)
    assert out.neighbour_ids == ("a", "b") and out.compensated


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
def test_lambda_zero_is_identity(gamma: float) -> None:
    rng = np.random.default_rng(1)
    cfg = CompensationConfig(lam=0.0, gamma=gamma)
    for _ in range(200):
        y_base = float(rng.random())
        est = NeighbourEstimate(float(rng.random()), float(rng.random()), 5.0)
        assert compensate(y_base, est, cfg).y == y_base


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0])
def test_all_positive_neighbours_move_prediction_up(gamma: float) -> None:
    cfg = CompensationConfig(gamma=gamma, lam=0.5)
    est = weighted_estimate(np.array([0.95, 0.9, 0.8]), np.ones(3), np.array([0.3, 0.4, 0.5]), cfg.tau)
    for y_base in (0.1, 0.4, 0.7):
        out = compensate(y_base, est, cfg)
        assert out.y > y_base and out.y_err > 0


def test_gamma_endpoints() -> None:
    est = NeighbourEstimate(label_mean=0.8, prediction_mean=0.3, support=4)
    assert error_estimate(0.6, est, gamma=1.0) == pytest.approx(0.8 - 0.6)  # kNN label estimate − base
    assert error_estimate(0.6, est, gamma=0.0) == pytest.approx(0.8 - 0.3)  # neighbours' residual
    # γ = 1, λ = 1 is pure kNN: the answer is the neighbours' label mean
    assert compensate(0.6, est, CompensationConfig(gamma=1.0, lam=1.0)).y == pytest.approx(0.8)


def test_output_is_clipped_and_empty_memory_returns_base() -> None:
    cfg = CompensationConfig(gamma=0.0, lam=2.0)
    assert compensate(0.9, NeighbourEstimate(1.0, 0.0, 1), cfg).y == 1.0
    assert compensate(0.1, NeighbourEstimate(0.0, 1.0, 1), cfg).y == 0.0
    out = compensate(0.42, None, cfg)
    assert out.y == 0.42 and out.y_err == 0.0 and not out.compensated
    assert weighted_estimate(np.zeros(0), np.zeros(0), np.zeros(0), 0.1) is None


def test_softmax_weights() -> None:
    w = softmax_weights(np.array([1.0, 1.0, 1.0]), 0.1)
    assert np.allclose(w, 1 / 3)
    w = softmax_weights(np.array([100.0, 0.0]), 0.01)  # stable for large logits
    assert np.isfinite(w).all() and w[0] == pytest.approx(1.0)
    sharp, flat = softmax_weights(np.array([0.9, 0.5]), 0.05), softmax_weights(np.array([0.9, 0.5]), 1.0)
    assert sharp[0] > flat[0] > 0.5


def test_feature_key() -> None:
    t1, t2 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    n1, n2 = np.array([3.0, 4.0]), np.array([3.0, 4.0])
    k1, k2 = feature_key(t1, n1), feature_key(t2, n2)
    assert k1.dtype == np.float32 and k1.shape == (5,)
    assert np.linalg.norm(k1) == pytest.approx(1.0, abs=1e-6)
    # parts weigh the same whatever their dimension: cos = (cos_text + cos_numeric) / 2 = (0 + 1) / 2
    assert float(k1 @ k2) == pytest.approx(0.5, abs=1e-6)
    only_text = feature_key(text_vector=[2.0, 0.0])
    assert np.allclose(only_text, [1.0, 0.0])
    only_num = feature_key(numeric_vector=[0.0, 5.0])
    assert np.allclose(only_num, [0.0, 1.0])
    zero_part = feature_key([0.0, 0.0], [1.0, 1.0])
    assert np.allclose(zero_part[:2], 0) and np.linalg.norm(zero_part) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        feature_key(None, None)
    with pytest.raises(ValueError):
        feature_key([np.nan, 1.0])


def test_hashed_vector_and_identity_key() -> None:
    a, b = hashed_vector("alice"), hashed_vector("bob")
    assert a.shape == (64,) and np.linalg.norm(a) == pytest.approx(1.0)
    assert np.array_equal(a, hashed_vector("alice"))  # stable
    assert not np.array_equal(hashed_vector("alice", namespace="item"), a)
    assert abs(float(a @ b)) < 0.5
    f1, f2 = feature_key(numeric_vector=[1.0, 0.0]), feature_key(numeric_vector=[0.0, 1.0])
    same_user = identity_key(f1, "alice", share=0.9) @ identity_key(f2, "alice", share=0.9)
    same_features = identity_key(f1, "alice", share=0.9) @ identity_key(f1, "bob", share=0.9)
    assert same_user == pytest.approx(0.9, abs=1e-6)  # unrelated features, one user: cos = share
    assert same_features == pytest.approx(0.1 + 0.9 * float(a @ b), abs=1e-6)
    k = identity_key(f1, "alice", share=0.9)
    assert k.dtype == np.float32 and np.linalg.norm(k) == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(identity_key(f1, "alice", share=0.0), f1)


def test_config_defaults_documented_and_validated() -> None:
    cfg = CompensationConfig()
    assert (cfg.k, cfg.tau, cfg.gamma, cfg.lam) == (32, 0.1, 0.5, 0.5)
    for name, f in CompensationConfig.model_fields.items():
        assert f.description, f"{name} has no description"
    for bad in ({"tau": 0}, {"gamma": 1.5}, {"k": 0}, {"lam": -1}, {"sketch_bits": 40}, {"nope": 1}):
        with pytest.raises(ValidationError):
            CompensationConfig(**bad)
    with pytest.raises(ValidationError):
        cfg.k = 3  # frozen: settings are shared between backends
