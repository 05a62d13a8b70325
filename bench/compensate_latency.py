"""Latency of one compensate call: RACE sketch vs exact in-memory kNN (target p95 ≤ 5 ms).

A tenant memory is filled to `n` samples (default: the default capacity) of `dim`-dimensional unit keys
drawn around a few hundred "users" (so neighbourhoods are realistic, not uniform noise); then single
queries are timed through `ErrorMemory.compensate`, the path the web view takes. Writes are timed too.
BLAS runs single-threaded: one query is a small matvec, and thread hand-offs only add jitter.
Wall-clock percentiles are the target; ``compensate_cpu`` (thread CPU time) and the load average are
reported beside them, so time lost to other processes on a shared machine can be told apart.

    python -m bench.compensate_latency [--n 10000] [--dim 384] [--queries 2000]
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from memstream.models.compensation import CompensationConfig
from memstream.models.error_memory import ErrorMemory
from memstream.models.error_policy import ErrorSample
from memstream.models.knn_backend import KnnBackend
from memstream.models.sketch_backend import SketchBackend

__all__ = ["run"]

TARGET_P95_MS = 5.0


def _keys(rng: np.random.Generator, n: int, dim: int, centres: int = 300) -> np.ndarray:
    c = rng.standard_normal((centres, dim))
    x = c[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def _bench(memory: ErrorMemory, keys: np.ndarray, queries: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    writes = []
    for j, key in enumerate(keys):
        sample = ErrorSample(f"s{j}", key, float(labels[j]), 0.5, float(j), "v1")
        t0 = time.perf_counter()
        memory.write("tenant", sample)
        writes.append(time.perf_counter() - t0)
    for q in queries[:50]:  # warm-up
        memory.compensate("tenant", q, 0.5)
    reads, cpu = [], []
    for q in queries:
        c0, t0 = time.thread_time(), time.perf_counter()
        memory.compensate("tenant", q, 0.5)
        reads.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    out = {
        "compensate": _summary(reads),
        "compensate_cpu": _summary(cpu),
        "write": _summary(writes[len(writes) // 2 :]),
        "size": memory.backend.size("tenant"),
    }
    out["meets_target"] = out["compensate"]["p95_ms"] <= TARGET_P95_MS
    return out


def run(
    n: int | None = None, dim: int = 384, queries: int = 2000, seed: int = 0, config: CompensationConfig | None = None
) -> dict[str, Any]:
    """Fill each backend with `n` samples and time `queries` single compensate calls."""
    config = config or CompensationConfig(ttl_s=None)
    n = n or config.capacity
    rng = np.random.default_rng(seed)
    keys, q = _keys(rng, n, dim), _keys(rng, queries, dim)
    labels = (rng.random(n) < 0.5).astype(float)
    result: dict[str, Any] = {
        "n": n,
        "dim": dim,
        "queries": queries,
        "target_p95_ms": TARGET_P95_MS,
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "load_average_1m": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "config": config.model_dump(),
    }
    with threadpool_limits(limits=1, user_api="blas"):
        result["sketch"] = _bench(ErrorMemory(SketchBackend(config), config), keys, q, labels)
        result["knn"] = _bench(ErrorMemory(KnnBackend(config), config), keys, q, labels)
    result["sketch_table_mib_per_tenant"] = (
        config.sketch_generations * config.sketch_arrays * (1 << config.sketch_bits) * 3 * 4 / 2**20
    )
    result["knn_key_mib_per_tenant"] = n * dim * 4 / 2**20
    return result


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.n, args.dim, args.queries), indent=2))


if __name__ == "__main__":
    main()
