"""Surprise models: vMF / Gaussian NLL against closed forms, recency weights, the protocol seam."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memstream.models.surprise import (
    DiagonalGaussianSurprise,
    SurpriseContext,
    SurpriseModel,
    VonMisesFisherSurprise,
    log_bessel_iv,
    make_surprise,
    recency_weights,
    vmf_log_normaliser,
)


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_recency_weights() -> None:
    w = recency_weights(3, 1.0)
    np.testing.assert_allclose(w, [0.25, 0.5, 1.0])
    np.testing.assert_allclose(recency_weights(4, None), np.ones(4))
    assert recency_weights(0, 2.0).size == 0


@pytest.mark.parametrize("nu", [10.0, 63.0, 191.0])
def test_log_bessel_matches_series(nu: float) -> None:
    # I_nu(x) = sum_k (x/2)^(2k+nu) / (k! Gamma(k+nu+1)), summed in log space
    for x in (0.5, 5.0, 50.0, 300.0):
        k = np.arange(0, 2000)
        terms = (2 * k + nu) * math.log(x / 2) - np.array([math.lgamma(i + 1) + math.lgamma(i + nu + 1) for i in k])
        ref = float(np.logaddexp.reduce(terms))
        assert abs(float(log_bessel_iv(nu, x)) - ref) < 1e-4 * max(1.0, abs(ref))


def test_vmf_normaliser_integrates_to_one_in_3d() -> None:
    # on S^2, C_3(k) = k / (4 pi sinh k)
    for kappa in (0.5, 3.0, 20.0):
        # the Debye expansion is for large orders; d=3 (nu=0.5) is checked loosely
        exact = math.log(kappa / (4 * math.pi * math.sinh(kappa)))
        assert abs(vmf_log_normaliser(kappa, 3) - exact) < 0.05
    assert abs(vmf_log_normaliser(0.0, 3) - math.log(1 / (4 * math.pi))) < 1e-12


def test_vmf_nearer_the_mean_is_less_surprising() -> None:
    rng = np.random.default_rng(0)
    centre = unit(rng, 1, 64)[0]
    ctx = centre + 0.02 * rng.normal(size=(10, 64))
    ctx = (ctx / np.linalg.norm(ctx, axis=1, keepdims=True)).astype(np.float32)
    far = unit(rng, 1, 64)
    model = VonMisesFisherSurprise(half_life=None)
    s = model.score(np.stack([centre, far[0]]), (), SurpriseContext(ctx))
    assert s.shape == (2,) and s[0] < s[1]
    mu, kappa = model.fit(SurpriseContext(ctx))
    assert mu is not None and float(mu @ centre) > 0.99 and kappa > model.kappa_prior


def test_vmf_fixed_kappa_is_scaled_cosine_distance() -> None:
    rng = np.random.default_rng(1)
    ctx, x = unit(rng, 5, 32), unit(rng, 7, 32)
    model = VonMisesFisherSurprise(half_life=None, kappa=3.0)
    s = model.score(x, (), SurpriseContext(ctx))
    c = ctx.astype(np.float64).sum(0)
    mu = c / np.linalg.norm(c)
    np.testing.assert_allclose(s - s[0], -3.0 * (x @ mu - x[0] @ mu), atol=1e-6)


def test_vmf_recency_weighting_follows_the_latest_events() -> None:
    rng = np.random.default_rng(2)
    a, b = unit(rng, 2, 48)
    ctx = np.stack([a] * 6 + [b] * 2)
    recent = VonMisesFisherSurprise(half_life=1.0)
    flat = VonMisesFisherSurprise(half_life=None)
    ra, rb = recent.score(np.stack([a, b]), (), SurpriseContext(ctx))
    fa, fb = flat.score(np.stack([a, b]), (), SurpriseContext(ctx))
    assert rb < ra and fa < fb


def test_empty_context_gives_a_constant() -> None:
    rng = np.random.default_rng(3)
    x = unit(rng, 4, 16)
    for model in (VonMisesFisherSurprise(), DiagonalGaussianSurprise(prior_var=1 / 16)):
        s = model.score(x, (), SurpriseContext(np.zeros((0, 16), np.float32)))
        assert np.all(np.isfinite(s)) and np.ptp(s) < 1e-5


def test_gaussian_matches_closed_form() -> None:
    rng = np.random.default_rng(4)
    ctx, x = unit(rng, 6, 8), unit(rng, 3, 8)
    model = DiagonalGaussianSurprise(half_life=None, prior_var=0.1, prior_strength=2.0)
    mean = ctx.astype(np.float64).mean(0)
    var = (((ctx - mean) ** 2).sum(0) + 2.0 * 0.1) / (6 + 2.0)
    ref = 0.5 * (((x - mean) ** 2) / var + np.log(2 * np.pi * var)).sum(1)
    np.testing.assert_allclose(model.score(x, (), SurpriseContext(ctx)), ref, rtol=1e-6)


def test_models_satisfy_the_protocol_and_factory() -> None:
    for kind in ("vmf", "cosine", "gaussian"):
        model = make_surprise(kind)
        assert isinstance(model, SurpriseModel) and not model.needs_text
    with pytest.raises(ValueError):
        make_surprise("lm")


def test_a_text_model_plugs_in() -> None:
    class WordNovelty:
        name = "novelty"
        needs_text = True

        def score(self, vectors, texts, context):  # fraction of words unseen in the context
            seen = {w for t in context.texts for w in t.split()}
            return np.array([np.mean([w not in seen for w in t.split()]) for t in texts])

    model: SurpriseModel = WordNovelty()
    ctx = SurpriseContext(np.zeros((1, 2), np.float32), ("the cat sat",))
    np.testing.assert_allclose(model.score(np.zeros((2, 2)), ("the cat", "a dog"), ctx), [0.0, 1.0])
