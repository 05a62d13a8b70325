"""ReLoop2 error compensation: the pure maths and its settings.

ReLoop2 (Zhu et al., KDD 2023, "Building Self-Adaptive Recommendation Models via Responsive Error
Compensation Loop") pairs a slowly retrained base model with a fast, non-parametric *error memory* of
recent feedback samples ``(key, label y_i, base prediction ŷ_i)``. At serving time the memory is queried
with the new sample's key and the base output is corrected:

    neighbours   the k stored samples most similar to the query key (cosine)
    weights      w_i = softmax(sim_i / τ)                      (sharper for small τ)
    label mean   ȳ   = Σ w_i y_i                               (what similar samples turned out to be)
    pred. mean   ŷ̄   = Σ w_i ŷ_i                               (what the model said for them)
    error        y_err = γ·(ȳ − y_base) + (1 − γ)·(ȳ − ŷ̄)
    answer       y   = clip(y_base + λ·y_err, 0, 1)

The error estimate blends ReLoop2's two readings of the memory (our reading of its error-estimation
step; the paper's own symbols differ): ``γ = 1`` treats the neighbours' labels as a kNN estimate of the
query's own label (the correction is that estimate minus the base output, i.e. kNN-LM style interpolation
``y = (1 − λ)·y_base + λ·ȳ``); ``γ = 0`` transfers the neighbours' residual ``ȳ − ŷ̄`` (how wrong the model
has recently been around this key) onto the query. λ is the compensation strength: ``λ = 0`` returns the
base prediction unchanged.

The constant-memory sketch backend (`models.race_sketch`) answers the same ``(ȳ, ŷ̄)`` pair, with the
softmax over top-k replaced by the SimHash collision kernel; everything after the estimate is shared.

Keys: ReLoop2 keys samples by the model's representation of the input. Here `feature_key` turns a
feedback event's features (text embedding and/or numeric vector) into a unit vector, and `identity_key`
optionally prepends a hashed user-id block so that a user's own recent errors are the nearest ones —
on MovieLens-100K that block carries the whole gain (see ``bench/eval_compensation.py``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Compensation",
    "CompensationConfig",
    "NeighbourEstimate",
    "compensate",
    "error_estimate",
    "feature_key",
    "fit_dim",
    "hashed_vector",
    "identity_key",
    "memory_key",
    "softmax_weights",
    "weighted_estimate",
]


class CompensationConfig(BaseModel):
    """Settings of the error memory and of the compensation formula (nested in the app settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(32, ge=1, description="Neighbours retrieved per query (kNN backend).")
    tau: float = Field(
        0.1,
        gt=0,
        description="Softmax temperature over cosine similarities; small = trust the closest neighbours.",
    )
    gamma: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Blend of the error estimate: 1 = neighbours' label mean minus y_base, "
        "0 = neighbours' mean residual (label − prediction).",
    )
    lam: float = Field(0.5, ge=0, description="λ, compensation strength; 0 returns the base prediction.")
    min_similarity: float = Field(
        0.0,
        ge=-1,
        le=1,
        description="Neighbours below this cosine similarity are ignored (Qdrant's score_threshold).",
    )
    capacity: int = Field(10_000, ge=1, description="Samples kept per tenant; the oldest are evicted.")
    ttl_s: float | None = Field(
        7 * 24 * 3600.0, gt=0, description="Samples older than this (event time, seconds) expire; None = never."
    )
    user_share: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="Share of the key (squared norm) given to the hashed user id by identity_key; "
        "0 = features only. Errors are mostly user-specific, so identity should dominate.",
    )
    user_dim: int = Field(64, ge=8, description="Dimensions of the hashed user-id block of the key.")
    sketch_arrays: int = Field(16, ge=1, description="RACE sketch: K, independent hash arrays.")
    sketch_bits: int = Field(12, ge=1, le=24, description="RACE sketch: L, SimHash bits per array (2^L buckets each).")
    sketch_generations: int = Field(
        2, ge=2, description="Sketch backend: rotating sub-sketches that approximate capacity/ttl windows."
    )
    seed: int = Field(0, description="Seed of the sketch's random hyperplanes.")


@dataclass(frozen=True)
class NeighbourEstimate:
    """What the memory says about a query key: weighted label and prediction means of its neighbours.

    `support` is the number of samples behind the estimate (neighbours used; for the sketch, the mean
    bucket count per array). `neighbour_ids` lists the samples used when the backend can name them.
    """

    label_mean: float
    prediction_mean: float
    support: float
    neighbour_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Compensation:
    """A compensated prediction and where it came from."""

    y: float
    y_base: float
    y_err: float
    support: float = 0.0
    neighbour_ids: tuple[str, ...] = field(default=())

    @property
    def compensated(self) -> bool:
        """True when the memory had something to say (the answer may still equal y_base if λ = 0)."""
        return self.support > 0


def feature_key(
    text_vector: Sequence[float] | np.ndarray | None = None,
    numeric_vector: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """The memory key of a sample's features: a unit-norm float32 vector compared by cosine.

    Each given part is L2-normalised on its own, the parts are concatenated (text first) and the result
    normalised again, so with both parts present ``cos(a, b) = (cos_text + cos_numeric) / 2``: text and
    numbers weigh the same however many dimensions each has. With one part the key is that part,
    normalised. An all-zero part stays zero (similar to nothing). A tenant must keep one layout (which
    parts, which dimensions) for all of its samples: keys of different shapes cannot be compared.
    """
    parts = [np.asarray(v, dtype=np.float64).ravel() for v in (text_vector, numeric_vector) if v is not None]
    if not parts:
        raise ValueError("feature_key needs a text vector, a numeric vector, or both")
    unit = [_normalise(p) for p in parts]
    return _normalise(np.concatenate(unit)).astype(np.float32)


@lru_cache(maxsize=65536)
def _hashed(namespace: str, ident: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(f"{namespace}:{ident}".encode(), digest_size=8).digest(), "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    v /= np.linalg.norm(v)
    v.setflags(write=False)
    return v


def hashed_vector(ident: str, dim: int = 64, namespace: str = "user") -> np.ndarray:
    """A fixed pseudo-random unit vector per id (the hashing trick): same id → same vector, anywhere.

    Two different ids are nearly orthogonal (cosine ~ N(0, 1/dim)). No training and no vocabulary, so
    it exists for ids no model has seen — which is when compensation matters most.
    """
    return _hashed(namespace, str(ident), dim)


def identity_key(key: np.ndarray, user_id: str, share: float = 0.9, dim: int = 64) -> np.ndarray:
    """``[√share·hashed_vector(user_id), √(1−share)·key]``: a unit key that also says whose sample it is.

    With share s, two samples of one user on unrelated features have cosine ≈ s and two users on
    identical features 1 − s: neighbours are the user's own recent errors, ordered by feature
    similarity. ``share = 0`` returns `key` unchanged. `key` must be unit-norm (see `feature_key`).
    """
    if share <= 0:
        return np.asarray(key, dtype=np.float32)
    user = hashed_vector(user_id, dim)
    return np.concatenate([math.sqrt(share) * user, math.sqrt(1 - share) * np.asarray(key, np.float64)]).astype(
        np.float32
    )


def fit_dim(key: Sequence[float] | np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """`key` as a unit float32 vector of exactly `dim` dimensions, so any feature layout fits a fixed-size store.

    A shorter key is zero-padded (cosines unchanged); a longer one is multiplied by a fixed seeded Gaussian
    matrix (Johnson–Lindenstrauss: cosines kept to within about ±1/√dim) and renormalised. The matrix
    depends only on (input size, dim, seed): every worker maps the same layout the same way.
    """
    v = np.asarray(key, dtype=np.float64).ravel()
    if v.size <= dim:
        out = np.zeros(dim)
        out[: v.size] = v
    else:
        out = _projection(v.size, dim, seed) @ v
    return _normalise(out).astype(np.float32)


@lru_cache(maxsize=8)
def _projection(size: int, dim: int, seed: int) -> np.ndarray:
    m = np.random.default_rng([seed, size, dim]).standard_normal((dim, size)) / math.sqrt(dim)
    m.setflags(write=False)
    return m


def memory_key(
    text_vector: Sequence[float] | np.ndarray | None,
    numeric_vector: Sequence[float] | np.ndarray | None,
    user_id: str,
    config: CompensationConfig,
    dim: int,
) -> np.ndarray:
    """The `dim`-dimensional key a sample is stored and queried under: `feature_key` fitted (`fit_dim`) to
    the room the user block leaves, then `identity_key` with the config's user_share and user_dim."""
    features = feature_key(text_vector, numeric_vector)
    if config.user_share <= 0:
        return fit_dim(features, dim)
    if config.user_dim >= dim:
        raise ValueError(f"user_dim {config.user_dim} leaves no room for features in a {dim}-d key")
    room = fit_dim(features, dim - config.user_dim)
    return identity_key(room, user_id, config.user_share, config.user_dim)


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm):
        raise ValueError("feature vector has non-finite values")
    return v / norm if norm > 0 else v


def softmax_weights(similarities: np.ndarray, tau: float) -> npt.NDArray[np.float64]:
    """softmax(sim / τ), computed stably; an empty input gives an empty output."""
    sims = np.asarray(similarities, dtype=np.float64)
    if sims.size == 0:
        return sims
    z = sims / tau
    z -= z.max()
    w = np.exp(z)
    weights: npt.NDArray[np.float64] = w / w.sum()  # ndarray.sum() is Any in numpy's stubs
    return weights


def weighted_estimate(
    similarities: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    tau: float,
    neighbour_ids: Sequence[str] = (),
) -> NeighbourEstimate | None:
    """The kNN reading of the memory: softmax(sim/τ)-weighted label and prediction means (None if empty).

    Any neighbour store that returns (similarity, label, prediction) triples — the in-memory kNN, a
    Qdrant ``query_points`` answer — turns them into an estimate with this one function.
    """
    w = softmax_weights(similarities, tau)
    if w.size == 0:
        return None
    return NeighbourEstimate(
        label_mean=float(w @ np.asarray(labels, dtype=np.float64)),
        prediction_mean=float(w @ np.asarray(predictions, dtype=np.float64)),
        support=float(w.size),
        neighbour_ids=tuple(neighbour_ids),
    )


def error_estimate(y_base: float, estimate: NeighbourEstimate, gamma: float) -> float:
    """ReLoop2's error estimate: ``γ·(ȳ − y_base) + (1 − γ)·(ȳ − ŷ̄)``."""
    label_term = estimate.label_mean - y_base
    residual_term = estimate.label_mean - estimate.prediction_mean
    return gamma * label_term + (1.0 - gamma) * residual_term


def compensate(y_base: float, estimate: NeighbourEstimate | None, config: CompensationConfig) -> Compensation:
    """``clip(y_base + λ·y_err, 0, 1)``; with no estimate (empty memory) the base prediction, clipped."""
    if estimate is None or estimate.support <= 0:
        return Compensation(y=_clip(y_base), y_base=y_base, y_err=0.0)
    y_err = error_estimate(y_base, estimate, config.gamma)
    return Compensation(
        y=_clip(y_base + config.lam * y_err),
        y_base=y_base,
        y_err=y_err,
        support=estimate.support,
        neighbour_ids=estimate.neighbour_ids,
    )


def _clip(y: float) -> float:
    return float(min(1.0, max(0.0, y)))
