"""RACE sketch: hashing, convergence to exact kernel / kNN means, bytes round trip."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.models.compensation import weighted_estimate
from memstream.models.race_sketch import RaceSketch, SimHash


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _clusters(seed: int = 0, dim: int = 32, per: int = 200, noise: float = 0.15):
    """Three well separated clusters with label rates 0.9 / 0.5 / 0.1 and predictions 0.3 / 0.5 / 0.7."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((3, dim)))
    keys, labels, preds, which = [], [], [], []
    for c, (rate, pred) in enumerate(((0.9, 0.3), (0.5, 0.5), (0.1, 0.7))):
        keys.append(_unit(centres[c] + noise * rng.standard_normal((per, dim))))
        labels.append((rng.random(per) < rate).astype(float))
        preds.append(pred + 0.05 * rng.standard_normal(per))
        which += [c] * per
    return centres, np.vstack(keys).astype(np.float32), np.concatenate(labels), np.concatenate(preds), np.array(which)


def test_simhash_buckets() -> None:
    h = SimHash(dim=8, arrays=5, bits=6, seed=3)
    key = _unit(np.arange(1.0, 9.0))
    b = h.buckets(key)
    assert b.shape == (5,) and b.dtype == np.int64
    assert ((b >= 0) & (b < 64)).all()
    assert np.array_equal(b, SimHash(8, 5, 6, seed=3).buckets(key))  # deterministic by seed
    assert np.array_equal(h.buckets(2.5 * key), b)  # scale-free: only the direction matters
    many = h.buckets_many(np.stack([key, -key]))
    assert np.array_equal(many[0], b) and np.array_equal(many[1], 63 - b)  # antipode flips every bit
    with pytest.raises(ValueError):
        h.buckets_many(np.zeros((2, 7)))


def test_single_sample_and_empty() -> None:
    s = RaceSketch.create(dim=4, arrays=8, bits=4)
    key = _unit(np.array([1.0, 2.0, 3.0, 4.0]))
    assert s.estimate(key) is None
    s.add(key, 1.0, 0.25)
    est = s.estimate(key)
    assert est is not None and est.support == 1.0
    assert est.label_mean == pytest.approx(1.0) and est.prediction_mean == pytest.approx(0.25)
    assert s.written == 1
    s.clear()
    assert s.estimate(key) is None and s.written == 0


def test_add_many_matches_add() -> None:
    _, keys, labels, preds, _ = _clusters(seed=1, per=30)
    a, b = RaceSketch.create(32, 8, 6, seed=5), RaceSketch.create(32, 8, 6, seed=5)
    for k, y, p in zip(keys, labels, preds):
        a.add(k, y, p)
    b.add_many(keys, labels, preds)
    assert np.allclose(a.tables, b.tables) and a.written == b.written == len(keys)


def test_converges_to_exact_kernel_mean() -> None:
    """As K grows, the read tends to Σ p^L y / Σ p^L with p = 1 − θ/π (the collision kernel)."""
    rng = np.random.default_rng(7)
    dim, bits = 16, 4
    keys = _unit(rng.standard_normal((400, dim))).astype(np.float32)
    labels = (keys[:, 0] > 0).astype(float)  # label depends on direction, so the kernel mean is non-trivial
    preds = rng.random(400)
    q = _unit(rng.standard_normal(dim) + 2 * np.eye(dim)[0]).astype(np.float32)
    theta = np.arccos(np.clip(keys @ q, -1, 1))
    kern = (1 - theta / np.pi) ** bits
    exact_y, exact_p = kern @ labels / kern.sum(), kern @ preds / kern.sum()
    errors = []
    for arrays in (4, 64, 1024):
        s = RaceSketch.create(dim, arrays, bits, seed=11)
        s.add_many(keys, labels, preds)
        est = s.estimate(q)
        assert est is not None
        errors.append(abs(est.label_mean - exact_y) + abs(est.prediction_mean - exact_p))
    assert errors[-1] < 0.03
    assert errors[-1] < errors[0]


def test_converges_to_knn_means_on_clusters() -> None:
    """On tight, well separated clusters the sketch's read agrees with the exact kNN estimate (k = cluster)."""
    centres, keys, labels, preds, which = _clusters(noise=0.05)
    s = RaceSketch.create(dim=32, arrays=128, bits=8, seed=2)
    s.add_many(keys, labels, preds)
    for c in range(3):
        q = centres[c].astype(np.float32)
        sims = keys @ q
        top = np.argsort(-sims)[:200]
        knn = weighted_estimate(sims[top], labels[top], preds[top], tau=1.0)  # near-uniform over the cluster
        est = s.estimate(q)
        assert knn is not None and est is not None
        assert est.label_mean == pytest.approx(knn.label_mean, abs=0.04)
        assert est.prediction_mean == pytest.approx(knn.prediction_mean, abs=0.04)
        assert set(which[top]) == {c}


def test_bytes_round_trip() -> None:
    _, keys, labels, preds, _ = _clusters(seed=3, per=50)
    s = RaceSketch.create(32, arrays=8, bits=6, seed=9)
    s.add_many(keys, labels, preds)
    data = s.to_bytes()
    assert isinstance(data, bytes)
    r = RaceSketch.from_bytes(data)
    assert np.array_equal(r.tables, s.tables) and np.array_equal(r.hasher.planes, s.hasher.planes)
    assert (r.hasher.arrays, r.hasher.bits, r.hasher.seed, r.written) == (8, 6, 9, s.written)
    q = keys[0]
    assert r.estimate(q) == s.estimate(q)
    r.add(q, 1.0, 0.0)  # the restored sketch keeps working
    assert r.written == s.written + 1
    with pytest.raises(ValueError):
        RaceSketch.from_bytes(b"not a sketch")


def test_constant_memory() -> None:
    s = RaceSketch.create(dim=32, arrays=4, bits=5)
    before = s.tables.nbytes
    _, keys, labels, preds, _ = _clusters(seed=4, per=100)
    s.add_many(keys, labels, preds)
    assert s.tables.nbytes == before == 4 * 32 * 3 * 4
