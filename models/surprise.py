"""Surprise of an event given its session context, behind one small protocol.

A surprise model scores events by their negative log-likelihood (nats) under a distribution fitted to
the *context*: the current episode's earlier events, oldest first. It sees both the event's vector and
its text, so a token-level language-model surprise (mean −log P(token | context texts), as in EM-LLM)
can be plugged in later behind the same `SurpriseModel` protocol.

The default, `VonMisesFisherSurprise`, needs nothing but the embeddings the pipeline already has:
unit vectors are modelled on the sphere by a von Mises–Fisher distribution whose mean direction is the
recency-weighted resultant of the context and whose concentration κ is estimated from that resultant
(Banerjee et al. 2005) and shrunk towards a prior κ₀, so that one or two context events do not give an
infinitely peaked distribution. `DiagonalGaussianSurprise` is the Euclidean alternative.

`LanguageModelSurprise` is EM-LLM's own signal: the mean (or sum, or max) −log P(token | context) of an
event's text under a causal language model, the context being the last ``context_tokens`` tokens of the
session's earlier events. It works on token ids from any `TokenScorer` (`models.language_model`), so this
module stays free of ONNX Runtime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "DiagonalGaussianSurprise",
    "LanguageModelSurprise",
    "SurpriseContext",
    "SurpriseModel",
    "TokenScorer",
    "VonMisesFisherSurprise",
    "log_bessel_iv",
    "make_surprise",
    "recency_weights",
    "reduce_nll",
    "vmf_log_normaliser",
]


@dataclass(frozen=True)
class SurpriseContext:
    """What an event is compared with: the current episode's earlier events, oldest first.

    ``vectors`` is ``(n, d)`` float32 (n may be 0). ``texts`` is empty unless the model asked for texts
    (`SurpriseModel.needs_text`); then it is aligned with ``vectors``.
    """

    vectors: np.ndarray
    texts: Sequence[str] = field(default=())

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


@runtime_checkable
class SurpriseModel(Protocol):
    """Negative log-likelihood of events given a context; higher means more surprising."""

    @property
    def name(self) -> str:
        """Short name, for logs and results."""
        ...

    @property
    def needs_text(self) -> bool:
        """Whether contexts must carry the events' texts (a token-level model does; vectors are always there)."""
        ...

    def score(self, vectors: np.ndarray, texts: Sequence[str], context: SurpriseContext) -> np.ndarray:
        """NLL of each row of ``vectors`` (``(m, d)``, texts aligned or empty), each given ``context``
        alone (events are scored independently, not conditioned on each other). Returns ``(m,)`` float64.
        """
        ...


def recency_weights(n: int, half_life: float | None) -> np.ndarray:
    """Weights of ``n`` context events, oldest first: the newest weighs 1, one ``half_life`` older ½.

    ``None`` (or ``inf``) gives equal weights: the whole episode counts alike.
    """
    if n == 0:
        return np.zeros(0)
    if half_life is None or not math.isfinite(half_life):
        return np.ones(n)
    age = np.arange(n - 1, -1, -1, dtype=np.float64)
    return np.power(0.5, age / half_life)


def log_bessel_iv(nu: float, x: float | np.ndarray) -> npt.NDArray[np.float64]:
    """log I_ν(x) for large order ν (≥ ~10) by the uniform asymptotic (Debye) expansion.

    Accurate to ~1e-4 relative for ν ≥ 10, which covers vMF normalisers in d ≥ 22 dimensions; numpy
    only (no scipy in the worker). Two correction terms of the series are included.
    """
    x = np.asarray(x, dtype=np.float64)
    z = x / nu
    s = np.sqrt(1.0 + z * z)
    eta = s + np.log(z / (1.0 + s))
    t = 1.0 / s
    u1 = (3.0 * t - 5.0 * t**3) / 24.0
    u2 = (81.0 * t**2 - 462.0 * t**4 + 385.0 * t**6) / 1152.0
    out: npt.NDArray[np.float64] = (  # numpy's stubs give Any for these ufuncs
        -0.5 * np.log(2.0 * np.pi * nu) + nu * eta - 0.5 * np.log(s) + np.log1p(u1 / nu + u2 / nu**2)
    )
    return out


def _log_bessel_iv_scalar(nu: float, x: float) -> float:
    """`log_bessel_iv` for one value, in plain floats (it runs for every scored event)."""
    z = x / nu
    s = math.sqrt(1.0 + z * z)
    t = 1.0 / s
    u1 = (3.0 * t - 5.0 * t**3) / 24.0
    u2 = (81.0 * t**2 - 462.0 * t**4 + 385.0 * t**6) / 1152.0
    eta = s + math.log(z / (1.0 + s))
    return -0.5 * math.log(2.0 * math.pi * nu) + nu * eta - 0.5 * math.log(s) + math.log1p(u1 / nu + u2 / nu**2)


def vmf_log_normaliser(kappa: float, dim: int) -> float:
    """log C_d(κ) of the vMF density C_d(κ)·exp(κ μᵀx) on the unit sphere S^{d−1}."""
    nu = dim / 2.0 - 1.0
    if kappa < 1e-8:  # uniform on the sphere: 1 / area
        return float(math.lgamma(dim / 2.0) - math.log(2.0) - (dim / 2.0) * math.log(math.pi))
    return nu * math.log(kappa) - (dim / 2.0) * math.log(2.0 * math.pi) - _log_bessel_iv_scalar(nu, kappa)


@dataclass(frozen=True)
class VonMisesFisherSurprise:
    """−log vMF(x; μ, κ), with μ, κ fitted to the recency-weighted context.

    Parameters (defaults chosen for 384-d sentence embeddings, MiniLM-like):

    - ``half_life`` (events, default 8): recency weighting of the context, so the distribution follows
      an episode that drifts slowly; ``None`` weighs the whole episode alike.
    - ``kappa``: fixed concentration. Set, the normaliser is a constant and the surprise is the cosine
      distance to the context's mean direction, scaled by κ. ``None`` (default) fits κ online.
    - ``kappa_prior`` (default 60) and ``prior_strength`` (pseudo-events, default 4): the fitted κ is
      the Banerjee estimate from the weighted mean resultant length R̄, shrunk towards κ₀ by
      ``(n_eff·κ̂ + s·κ₀)/(n_eff + s)`` with n_eff the effective number of context events
      (Σw)²/Σw². R̄² is bias-corrected to (n_eff·R̄² − 1)/(n_eff − 1) first (a few random unit
      vectors have R̄ ≈ 1/√n, one has R̄ = 1), and κ̂ is capped at ``kappa_max``.

    With an empty context the distribution is the prior: uniform direction is meaningless for
    surprise, so the score is the uniform-sphere NLL (a constant).
    """

    half_life: float | None = 8.0
    kappa: float | None = None
    kappa_prior: float = 60.0
    prior_strength: float = 4.0
    kappa_max: float = 2000.0
    name: str = "vmf"
    needs_text: bool = False

    def fit(self, context: SurpriseContext) -> tuple[np.ndarray | None, float]:
        """(mean direction μ or None, concentration κ) of the context."""
        n = len(context)
        if n == 0:
            return None, 0.0
        x = context.vectors
        dim = x.shape[1]
        if self.half_life is None or not math.isfinite(self.half_life):
            resultant = x.sum(axis=0, dtype=np.float64)
            w_sum, n_eff = float(n), float(n)
        else:
            w = recency_weights(n, self.half_life)
            resultant = w @ x
            w_sum = float(w.sum())
            n_eff = w_sum * w_sum / float(w @ w)
        norm = math.sqrt(float(resultant @ resultant))
        if norm < 1e-12:
            return None, 0.0
        mu = resultant / norm
        if self.kappa is not None:
            return mu, float(self.kappa)
        if n_eff < 1.0 + 1e-6:  # one event says nothing about the spread: prior only
            return mu, float(self.kappa_prior)
        # R̄² is biased up by 1/n for few samples; (n·R̄² − 1)/(n − 1) estimates the population ρ²
        r2 = (norm / w_sum) ** 2
        rho = math.sqrt(min(max((n_eff * r2 - 1.0) / (n_eff - 1.0), 0.0), 1.0 - 1e-9))
        kappa_hat = min(rho * (dim - rho**2) / (1.0 - rho**2), self.kappa_max)
        kappa = (n_eff * kappa_hat + self.prior_strength * self.kappa_prior) / (n_eff + self.prior_strength)
        return mu, float(kappa)

    def score(self, vectors: np.ndarray, texts: Sequence[str], context: SurpriseContext) -> npt.NDArray[np.float64]:
        dim = vectors.shape[1]
        mu, kappa = self.fit(context)
        if mu is None:
            return np.full(vectors.shape[0], -vmf_log_normaliser(0.0, dim))
        scores: npt.NDArray[np.float64] = -vmf_log_normaliser(kappa, dim) - kappa * (vectors @ mu)  # `@`: Any
        return scores


@dataclass(frozen=True)
class DiagonalGaussianSurprise:
    """−log N(x; m, diag(v)), with m, v the recency-weighted context moments.

    The per-dimension variance is shrunk towards ``prior_var`` (default 1/384, the per-dimension
    variance of isotropic unit vectors in 384-d) with ``prior_strength`` pseudo-events (default 4), so
    short contexts still give a proper distribution. The empty context gives N(0, prior_var·I).
    """

    half_life: float | None = 8.0
    prior_var: float = 1.0 / 384.0
    prior_strength: float = 4.0
    name: str = "gaussian"
    needs_text: bool = False

    def score(self, vectors: np.ndarray, texts: Sequence[str], context: SurpriseContext) -> npt.NDArray[np.float64]:
        x = vectors.astype(np.float64)
        n, dim = len(context), x.shape[1]
        if n == 0:
            mean, var = np.zeros(dim), np.full(dim, self.prior_var)
        else:
            w = recency_weights(n, self.half_life)
            c = context.vectors.astype(np.float64)
            mean = (w @ c) / w.sum()
            scatter = w @ (c - mean) ** 2
            var = (scatter + self.prior_strength * self.prior_var) / (w.sum() + self.prior_strength)
        diff = x - mean
        scores: npt.NDArray[np.float64] = 0.5 * ((diff * diff) / var + np.log(2.0 * np.pi * var)).sum(axis=1)
        return scores


def make_surprise(kind: str, half_life: float | None = 8.0) -> SurpriseModel:
    """The built-in surprise model called ``kind``: ``vmf`` (default), ``cosine`` (vMF with fixed κ) or
    ``gaussian``."""
    if kind == "vmf":
        return VonMisesFisherSurprise(half_life=half_life)
    if kind == "cosine":
        return VonMisesFisherSurprise(half_life=half_life, kappa=1.0, name="cosine")
    if kind == "gaussian":
        return DiagonalGaussianSurprise(half_life=half_life)
    raise ValueError(f"unknown surprise kind {kind!r} (vmf, cosine or gaussian)")


# -- token-level surprise from a causal language model --------------------------------------------
Reduce = Literal["mean", "sum", "max"]


class TokenScorer(Protocol):
    """A causal LM seen as a tokenizer plus per-token NLLs (`models.language_model.LanguageModel`)."""

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``, no special tokens."""
        ...

    def nll(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[npt.NDArray[np.float64]]:
        """For each (context ids, text ids): −log P(text token | context, earlier text tokens), per text token."""
        ...


def reduce_nll(token_nll: np.ndarray, how: Reduce = "mean") -> float:
    """One event's surprise from its tokens' NLLs; NaN for an event without tokens (no evidence either way)."""
    if token_nll.size == 0:
        return math.nan
    if how == "mean":
        return float(np.mean(token_nll))
    if how == "sum":
        return float(np.sum(token_nll))
    if how == "max":
        return float(np.max(token_nll))
    raise ValueError(f"unknown reduction {how!r} (mean, sum or max)")


@dataclass(frozen=True)
class LanguageModelSurprise:
    """Surprise of an event's text under a causal LM given the last ``context_tokens`` tokens before it.

    A session's context is the token ids of its earlier events' texts, each followed by ``separator``
    (a newline), truncated to the latest ``context_tokens`` ids (`extend`). `score_tokens` scores many
    (context, text) pairs in one model run, whatever session each comes from.

    ``contrast=True`` subtracts the text's surprise without any context (pointwise mutual information with
    the context, negated): a sentence that is hard in itself (names, numbers) is not surprising *given*
    the session unless the session fails to help predict it. It adds one short, text-only sequence per event.
    """

    model: TokenScorer
    context_tokens: int = 128
    reduce: Reduce = "mean"
    contrast: bool = False
    separator: str = "\n"
    name: str = "lm"
    needs_text: bool = True

    def __post_init__(self) -> None:
        if self.context_tokens < 0:
            raise ValueError("context_tokens must be ≥ 0")
        if self.reduce not in ("mean", "sum", "max"):
            raise ValueError(f"unknown reduction {self.reduce!r} (mean, sum or max)")

    def tokens(self, text: str) -> list[int]:
        return self.model.tokenize(text)

    def extend(self, context: Sequence[int], tokens: Sequence[int]) -> list[int]:
        """The context after an event with ``tokens``: its ids and the separator appended, the oldest dropped."""
        if self.context_tokens == 0:
            return []
        joined = [*context, *tokens, *self._separator_ids]
        return joined[-self.context_tokens :]

    def context_of(self, texts: Sequence[str]) -> list[int]:
        """The context after events with ``texts``, oldest first."""
        context: list[int] = []
        for text in texts:
            context = self.extend(context, self.tokens(text))
        return context

    def score_tokens(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> npt.NDArray[np.float64]:
        """Surprise of each (context ids, text ids) pair, all in one model call. Contexts longer than
        ``context_tokens`` are cut to their latest ids."""
        cut = [(list(c)[-self.context_tokens :] if self.context_tokens else [], list(t)) for c, t in requests]
        if not cut:
            return np.zeros(0)
        alone: list[tuple[list[int], list[int]]] = [([], t) for _, t in cut] if self.contrast else []
        nlls = [reduce_nll(np.asarray(n, np.float64), self.reduce) for n in self.model.nll([*cut, *alone])]
        scores = np.array(nlls[: len(cut)])
        return scores - np.array(nlls[len(cut) :]) if self.contrast else scores

    def score(self, vectors: np.ndarray, texts: Sequence[str], context: SurpriseContext) -> npt.NDArray[np.float64]:
        """`SurpriseModel.score`: each text given the context's texts (vectors are not used)."""
        ids = self.context_of(context.texts)
        return self.score_tokens([(ids, self.tokens(t)) for t in texts])

    @cached_property
    def _separator_ids(self) -> tuple[int, ...]:
        """Token ids of the separator, tokenised once (extend runs for every event)."""
        return tuple(self.model.tokenize(self.separator)) if self.separator else ()
