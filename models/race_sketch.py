"""RACE sketch: constant-memory, O(1) kernel-weighted means over a stream of (key, label, prediction).

ReLoop2 makes its error memory fast and bounded with an LSH sketch in the style of RACE (Coleman &
Shrivastava, "Sub-linear RACE Sketches for Approximate Kernel Density Estimation on Streaming Data",
WWW 2020): K independent arrays of 2^L buckets, each array indexed by an L-bit SimHash of the key.
Every bucket holds running sums ``(count, Σ label, Σ prediction)`` of the samples that hashed there.

Writing a sample adds to one bucket per array; reading sums the query's bucket in every array. Two unit
keys at angle θ share a SimHash bit with probability ``p = 1 − θ/π``, so a bucket with L bits collects
each stored sample with probability ``p^L``. The read therefore estimates the kernel-weighted means

    ȳ ≈ Σ_x p(x,q)^L · y_x / Σ_x p(x,q)^L,    ŷ̄ likewise with predictions,

the sketch's counterpart of the kNN backend's softmax(sim/τ) weights: L plays the part of 1/τ (larger L,
a sharper kernel, emptier buckets) and K averages out hashing noise. Memory is ``K·2^L·3`` floats and both
operations cost ``O(K·L·d)`` for the hashing, independent of how many samples were written.
"""

from __future__ import annotations

import io
import json

import numpy as np
import numpy.typing as npt

from memstream.models.compensation import NeighbourEstimate

__all__ = ["RaceSketch", "SimHash", "estimate_from_sums"]

_FORMAT = "memstream.race/1"


class SimHash:
    """K independent L-bit sign-random-projection hashes of d-dimensional keys."""

    def __init__(self, dim: int, arrays: int, bits: int, seed: int = 0, planes: np.ndarray | None = None):
        if not 1 <= bits <= 30:
            raise ValueError("bits must be in [1, 30]")
        if planes is None:
            planes = np.random.default_rng(seed).standard_normal((arrays * bits, dim)).astype(np.float32)
        if planes.shape != (arrays * bits, dim):
            raise ValueError(f"planes have shape {planes.shape}, expected {(arrays * bits, dim)}")
        self.dim, self.arrays, self.bits, self.seed = dim, arrays, bits, seed
        self.planes = np.ascontiguousarray(planes, dtype=np.float32)
        self._powers = 1 << np.arange(bits, dtype=np.int64)

    @property
    def buckets_per_array(self) -> int:
        return 1 << self.bits

    def buckets(self, key: np.ndarray) -> npt.NDArray[np.int64]:
        """Bucket index of `key` in each of the K arrays, shape (K,)."""
        row: npt.NDArray[np.int64] = self.buckets_many(np.asarray(key, dtype=np.float32)[None, :])[0]  # stubs: Any
        return row

    def buckets_many(self, keys: np.ndarray) -> npt.NDArray[np.int64]:
        """Bucket indices of n keys, shape (n, K)."""
        keys = np.asarray(keys, dtype=np.float32)
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (n, {self.dim}), got {keys.shape}")
        bits = (keys @ self.planes.T) >= 0  # (n, K·L)
        return bits.reshape(len(keys), self.arrays, self.bits).astype(np.int64) @ self._powers


class RaceSketch:
    """K×2^L buckets of running sums (count, Σ label, Σ prediction); see the module docstring.

    Sums are float32: counts stay exact up to 2^24 samples, far beyond any capacity the memory allows.
    """

    def __init__(self, hasher: SimHash, tables: np.ndarray | None = None, written: int = 0):
        shape = (hasher.arrays, hasher.buckets_per_array, 3)
        if tables is None:
            tables = np.zeros(shape, dtype=np.float32)
        if tables.shape != shape:
            raise ValueError(f"tables have shape {tables.shape}, expected {shape}")
        self.hasher = hasher
        self.tables = tables
        self.written = written  # samples added so far
        self._rows = np.arange(hasher.arrays)

    @classmethod
    def create(cls, dim: int, arrays: int = 16, bits: int = 12, seed: int = 0) -> RaceSketch:
        return cls(SimHash(dim, arrays, bits, seed))

    # -- writing ---------------------------------------------------------------------------------
    def add(self, key: np.ndarray, label: float, prediction: float) -> None:
        """Add one sample: O(K) bucket updates after hashing."""
        self.add_at(self.hasher.buckets(key), label, prediction)

    def add_at(self, buckets: np.ndarray, label: float, prediction: float) -> None:
        """Add one sample whose bucket indices (from `hasher.buckets`) are already known."""
        # one bucket per array, so the (array, bucket) pairs are distinct and += is safe
        self.tables[self._rows, buckets] += (1.0, float(label), float(prediction))
        self.written += 1

    def add_many(self, keys: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> None:
        """Add n samples at once (same result as n calls to `add`)."""
        buckets = self.hasher.buckets_many(keys)  # (n, K)
        values = np.stack([np.ones(len(buckets)), np.asarray(labels, float), np.asarray(predictions, float)], 1)
        for k in range(self.hasher.arrays):
            np.add.at(self.tables[k], buckets[:, k], values)
        self.written += len(buckets)

    def clear(self) -> None:
        self.tables[:] = 0.0
        self.written = 0

    # -- reading ---------------------------------------------------------------------------------
    def sums_at(self, buckets: np.ndarray) -> npt.NDArray[np.float64]:
        """(Σ count, Σ label, Σ prediction) over the K arrays' buckets of one query."""
        sums: npt.NDArray[np.float64] = self.tables[self._rows, buckets].sum(axis=0, dtype=np.float64)  # stubs: Any
        return sums

    def estimate(self, key: np.ndarray) -> NeighbourEstimate | None:
        """Kernel-weighted label and prediction means around `key`; None when every bucket is empty."""
        return estimate_from_sums(self.sums_at(self.hasher.buckets(key)), self.hasher.arrays)

    # -- bytes -----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Self-contained checkpoint: hyperplanes and tables (npz, compressed)."""
        buf = io.BytesIO()
        meta = {
            "format": _FORMAT,
            "dim": self.hasher.dim,
            "arrays": self.hasher.arrays,
            "bits": self.hasher.bits,
            "seed": self.hasher.seed,
            "written": self.written,
        }
        np.savez_compressed(buf, meta=np.array(json.dumps(meta)), planes=self.hasher.planes, tables=self.tables)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> RaceSketch:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"not a RACE sketch checkpoint: {meta.get('format')!r}")
            hasher = SimHash(meta["dim"], meta["arrays"], meta["bits"], meta["seed"], planes=npz["planes"])
            return cls(hasher, tables=npz["tables"].astype(np.float32), written=int(meta["written"]))


def estimate_from_sums(sums: np.ndarray, arrays: int) -> NeighbourEstimate | None:
    """Turn summed bucket contents (count, Σ label, Σ prediction) into means; None if nothing collided."""
    count, label_sum, pred_sum = (float(x) for x in sums)
    if count <= 0:
        return None
    return NeighbourEstimate(label_mean=label_sum / count, prediction_mean=pred_sum / count, support=count / arrays)
