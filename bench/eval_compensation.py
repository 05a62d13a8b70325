"""Offline evaluation of ReLoop2 error compensation on a time-ordered feedback stream.

Protocol (no peeking): sort interactions by time; train a base model on the first `train_fraction`;
replay the rest in time order — for each interaction predict with the base model, compensate from the
error memory holding only *earlier* feedback, then write this interaction's feedback (key, label, base
prediction) to the memory. AUC and logloss of base vs compensated, for the exact kNN and the RACE-sketch
backends, plus a λ = 0 pass through the same code that must reproduce the base predictions exactly.

Default data: MovieLens-100K (``ml-100k.inter`` from the recbole 1.2.1 wheel, fetched at run time and
never committed), label = rating ≥ 4. ``--input`` takes a CSV or JSONL with user_id, item_id, timestamp,
label (0/1) and optional numeric features (``f_*`` columns, or a JSONL ``features`` list).

Base model: logistic matrix factorisation, ``σ(b + b_u + b_i + p_u·q_i)``, full-batch Adam with L2,
epochs chosen by early stopping on the last 10 % of the training period, then refit on all of it. Users
and items unseen in training get the out-of-vocabulary default (zero bias and factors), as in serving.

Key (what a deployment has at feedback time, see `sample_keys`): ``identity_key(item_block, user_id)``,
i.e. ``[√s·user, √(1−s)·item]`` with s = ``config.user_share`` (0.9):
* user — `hashed_vector(user_id)` (the hashing trick: a fixed pseudo-random unit vector per id). It needs
  no training, so it exists for users the base model never saw (most of ML-100K's second half). The errors
  we want to fix are user-specific (new users, changed tastes), so identity carries most of the key.
* item — the base model's own item factor (ReLoop2 keys the memory by the model's representation), a
  hashed-id vector for unseen items; with row features, `feature_key(item, features)` (equal weights).
With s = 0.9 two samples of one user on unrelated items have cosine ≈ 0.9 and two users on one item ≈ 0.1:
the kNN ranks a user's own samples first, ordered by item similarity, and the SimHash kernel of the sketch
(which is much flatter than a top-k softmax) still separates a user's buckets from everyone else's.
Ablation on ML-100K: with s = 0 (item factor only) neither backend beats the base model; s = 0.5 gives
the kNN the same gain but the sketch about half of it.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import log_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from memstream.models.compensation import CompensationConfig, compensate, feature_key, hashed_vector, identity_key
from memstream.models.error_memory import ErrorBackend, ErrorMemory
from memstream.models.error_policy import ErrorSample
from memstream.models.knn_backend import KnnBackend
from memstream.models.sketch_backend import SketchBackend

__all__ = ["Interactions", "LogisticMF", "load_interactions", "run", "sample_keys", "train_base"]

TENANT = "eval"
MODEL_VERSION = "base-v1"


# ---------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interactions:
    """A feedback stream sorted by time; users/items as dense indices into `user_ids`/`item_ids`."""

    users: np.ndarray
    items: np.ndarray
    ts: np.ndarray
    labels: np.ndarray
    user_ids: list[str]
    item_ids: list[str]
    features: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def slice(self, sl: slice) -> Interactions:
        f = None if self.features is None else self.features[sl]
        return Interactions(
            self.users[sl], self.items[sl], self.ts[sl], self.labels[sl], self.user_ids, self.item_ids, f, self.source
        )


def _movielens_path() -> Path:
    from memstream.models.assets import RECBOLE, asset_path

    return asset_path(RECBOLE, "dataset_example/ml-100k/ml-100k.inter")


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    else:
        with open(path, newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh, delimiter="\t" if path.suffix.lower() in {".tsv", ".inter"} else ",")


def _row_features(row: dict[str, Any], fcols: list[str]) -> list[float] | None:
    if "features" in row and row["features"] is not None:
        return [float(x) for x in row["features"]]
    return [float(row[c]) for c in fcols] if fcols else None


def load_interactions(input_path: Path | None = None) -> Interactions:
    """Read ML-100K (default; label = rating ≥ 4) or a CSV/JSONL with user_id, item_id, timestamp, label."""
    if input_path is None:
        path = _movielens_path()
        raw = np.loadtxt(path, skiprows=1)
        users, items = raw[:, 0].astype(np.int64).astype(str), raw[:, 1].astype(np.int64).astype(str)
        ts, labels, feats = raw[:, 3], (raw[:, 2] >= 4).astype(np.float64), None
        source = "movielens-100k (recbole 1.2.1 ml-100k.inter), label = rating >= 4"
    else:
        path = Path(input_path)
        rows = list(_rows(path))
        if not rows:
            raise ValueError(f"{path} has no rows")
        fcols = sorted((c for c in rows[0] if c.startswith("f_")), key=lambda c: (len(c), c))
        users = np.array([str(r["user_id"]) for r in rows])
        items = np.array([str(r["item_id"]) for r in rows])
        ts = np.array([float(r["timestamp"]) for r in rows])
        labels = np.array([float(r["label"]) for r in rows])
        fl = [_row_features(r, fcols) for r in rows]
        feats = None if fl[0] is None else np.asarray(fl, dtype=np.float64)
        source = str(path)
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")
    order = np.argsort(ts, kind="stable")
    user_ids, u = np.unique(users[order], return_inverse=True)
    item_ids, i = np.unique(items[order], return_inverse=True)
    return Interactions(
        u, i, ts[order], labels[order], list(user_ids), list(item_ids), None if feats is None else feats[order], source
    )


# ---------------------------------------------------------------------------------------------------
# base model
# ---------------------------------------------------------------------------------------------------
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class LogisticMF:
    """σ(b + b_u + b_i + p_u·q_i); rows of never-trained users/items are zero (the OOV default)."""

    b: float
    bu: np.ndarray
    bi: np.ndarray
    P: np.ndarray
    Q: np.ndarray

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        z = self.b + self.bu[users] + self.bi[items] + np.einsum("nd,nd->n", self.P[users], self.Q[items])
        return _sigmoid(z)


def _fit_mf(
    data: Interactions,
    n_users: int,
    n_items: int,
    *,
    dim: int,
    reg: float,
    lr: float,
    epochs: int,
    seed: int,
    val: Interactions | None = None,
) -> tuple[LogisticMF, int]:
    """Full-batch Adam on mean logloss + L2; returns the model and (with `val`) the best epoch."""
    rng = np.random.default_rng(seed)
    u, i, y, n = data.users, data.items, data.labels, len(data)
    Su = sp.csr_matrix((np.ones(n), (u, np.arange(n))), shape=(n_users, n))  # scatter-add by user
    Si = sp.csr_matrix((np.ones(n), (i, np.arange(n))), shape=(n_items, n))
    p = {
        "b": np.zeros(1),
        "bu": np.zeros(n_users),
        "bi": np.zeros(n_items),
        "P": 0.1 * rng.standard_normal((n_users, dim)),
        "Q": 0.1 * rng.standard_normal((n_items, dim)),
    }
    m1 = {k: np.zeros_like(v) for k, v in p.items()}
    m2 = {k: np.zeros_like(v) for k, v in p.items()}
    best, best_epoch = math.inf, epochs
    for ep in range(1, epochs + 1):
        Pu, Qi = p["P"][u], p["Q"][i]
        g = (_sigmoid(p["b"][0] + p["bu"][u] + p["bi"][i] + np.einsum("nd,nd->n", Pu, Qi)) - y) / n
        grads = {
            "b": np.array([g.sum()]),
            "bu": Su @ g + reg * p["bu"],
            "bi": Si @ g + reg * p["bi"],
            "P": Su @ (g[:, None] * Qi) + reg * p["P"],
            "Q": Si @ (g[:, None] * Pu) + reg * p["Q"],
        }
        for k in p:
            m1[k] = 0.9 * m1[k] + 0.1 * grads[k]
            m2[k] = 0.999 * m2[k] + 0.001 * grads[k] ** 2
            p[k] -= lr * (m1[k] / (1 - 0.9**ep)) / (np.sqrt(m2[k] / (1 - 0.999**ep)) + 1e-8)
        if val is not None:
            q = np.clip(_model(p, u, i, data).predict(val.users, val.items), 1e-7, 1 - 1e-7)
            loss = float(-np.mean(val.labels * np.log(q) + (1 - val.labels) * np.log(1 - q)))
            if loss < best:
                best, best_epoch = loss, ep
    return _model(p, u, i, data), best_epoch


def _model(p: dict[str, np.ndarray], u: np.ndarray, i: np.ndarray, data: Interactions) -> LogisticMF:
    seen_u = np.zeros(len(p["bu"]), bool)
    seen_u[u] = True
    seen_i = np.zeros(len(p["bi"]), bool)
    seen_i[i] = True
    return LogisticMF(
        float(p["b"][0]), p["bu"] * seen_u, p["bi"] * seen_i, p["P"] * seen_u[:, None], p["Q"] * seen_i[:, None]
    )


def train_base(
    train: Interactions, *, dim: int = 16, reg: float = 1e-4, lr: float = 0.05, max_epochs: int = 200, seed: int = 0
) -> tuple[LogisticMF, int]:
    """Early-stop on the last 10 % (by time) of `train`, then refit on all of it for that many epochs."""
    nu, ni = len(train.user_ids), len(train.item_ids)
    cut = int(len(train) * 0.9)
    _, epochs = _fit_mf(
        train.slice(slice(0, cut)),
        nu,
        ni,
        dim=dim,
        reg=reg,
        lr=lr,
        epochs=max_epochs,
        seed=seed,
        val=train.slice(slice(cut, None)),
    )
    model, _ = _fit_mf(train, nu, ni, dim=dim, reg=reg, lr=lr, epochs=epochs, seed=seed)
    return model, epochs


# ---------------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------------
def sample_keys(
    data: Interactions, model: LogisticMF, trained_items: np.ndarray, config: CompensationConfig
) -> np.ndarray:
    """Memory keys ``identity_key(item_block, user_id)`` for every interaction (see the module docstring)."""
    q = model.Q
    item_rows = []
    for idx, iid in enumerate(data.item_ids):
        row = q[idx] if trained_items[idx] and np.linalg.norm(q[idx]) > 0 else hashed_vector(iid, q.shape[1], "item")
        item_rows.append(row / np.linalg.norm(row))
    items = np.stack(item_rows)
    rows = []
    for j in range(len(data)):
        block = items[data.items[j]]
        if data.features is not None:
            block = feature_key(block, data.features[j])
        rows.append(identity_key(block, data.user_ids[data.users[j]], config.user_share, config.user_dim))
    return np.stack(rows)


# ---------------------------------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------------------------------
def _replay(
    backend: ErrorBackend,
    config: CompensationConfig,
    test: Interactions,
    keys: np.ndarray,
    base: np.ndarray,
    progress: Any,
    label: str,
) -> dict[str, Any]:
    """Compensate-then-write in time order; returns compensated and λ=0 predictions and memory stats."""
    memory = ErrorMemory(backend, config)
    zero = config.model_copy(update={"lam": 0.0})
    y, y0 = np.empty(len(test)), np.empty(len(test))
    support = np.zeros(len(test))
    evicted = 0
    task = progress.add_task(label, total=len(test)) if progress else None
    t0 = time.perf_counter()
    for j in range(len(test)):
        est = memory.estimate(TENANT, keys[j], MODEL_VERSION)  # memory holds only earlier feedback
        y[j] = compensate(float(base[j]), est, config).y
        y0[j] = compensate(float(base[j]), est, zero).y
        support[j] = 0.0 if est is None else est.support
        sample = ErrorSample(str(j), keys[j], float(test.labels[j]), float(base[j]), float(test.ts[j]), MODEL_VERSION)
        evicted += sum(e.count for e in memory.write(TENANT, sample).evictions)
        if task is not None and (j % 500 == 499 or j == len(test) - 1):
            progress.update(task, completed=j + 1)
    return {
        "y": y,
        "y0": y0,
        "seconds": time.perf_counter() - t0,
        "evicted": evicted,
        "covered": float(np.mean(support > 0)),
        "mean_support": float(support.mean()),
        "final_size": backend.size(TENANT),
    }


def _metrics(labels: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    return float(roc_auc_score(labels, p)), float(log_loss(labels, p, labels=[0, 1]))


def _progress(show: bool) -> Any:
    if not show:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def run(
    input_path: Path | None = None,
    *,
    config: CompensationConfig | None = None,
    train_fraction: float = 0.5,
    limit: int | None = None,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run the whole evaluation and return a JSON-able dict (see the module docstring)."""
    config = config or CompensationConfig()
    t_start = time.perf_counter()
    data = load_interactions(input_path)
    if limit is not None:
        data = data.slice(slice(0, limit))
    n_train = int(len(data) * train_fraction)
    train, test = data.slice(slice(0, n_train)), data.slice(slice(n_train, None))
    with _progress(show_progress) as progress:
        task = progress.add_task("train base model", total=1) if progress else None
        t0 = time.perf_counter()
        model, epochs = train_base(train, seed=seed)
        train_s = time.perf_counter() - t0
        if task is not None:
            progress.update(task, completed=1)
        trained_items = np.zeros(len(data.item_ids), bool)
        trained_items[train.items] = True
        keys = sample_keys(test, model, trained_items, config)
        base = model.predict(test.users, test.items)
        # one query at a time: multi-threaded BLAS only adds hand-off cost to a 10k×d matvec
        with threadpool_limits(limits=1, user_api="blas"):
            knn = _replay(KnnBackend(config), config, test, keys, base, progress, "replay kNN")
            sketch = _replay(SketchBackend(config), config, test, keys, base, progress, "replay sketch")

    auc_base, ll_base = _metrics(test.labels, base)
    auc_knn, ll_knn = _metrics(test.labels, knn["y"])
    auc_sketch, ll_sketch = _metrics(test.labels, sketch["y"])
    auc_l0, ll_l0 = _metrics(test.labels, knn["y0"])
    seen_users = np.zeros(len(data.user_ids), bool)
    seen_users[train.users] = True
    return {
        "dataset": data.source,
        "n_train": n_train,
        "n_test": len(test),
        "test_positive_rate": float(test.labels.mean()),
        "test_rows_with_unseen_user": float(np.mean(~seen_users[test.users])),
        "auc_base": auc_base,
        "auc_knn": auc_knn,
        "auc_sketch": auc_sketch,
        "auc_lambda0": auc_l0,
        "logloss_base": ll_base,
        "logloss_knn": ll_knn,
        "logloss_sketch": ll_sketch,
        "logloss_lambda0": ll_l0,
        "lambda0_equals_base": bool(np.array_equal(knn["y0"], base) and np.array_equal(sketch["y0"], base)),
        "auc_gain_knn_points": 100 * (auc_knn - auc_base),
        "auc_gain_sketch_points": 100 * (auc_sketch - auc_base),
        "target_met_knn": bool(auc_knn >= auc_base + 0.01 and ll_knn <= ll_base),
        "target_met_sketch": bool(auc_sketch >= auc_base + 0.01 and ll_sketch <= ll_base),
        "memory": {
            name: {
                "seconds": r["seconds"],
                "evicted": r["evicted"],
                "final_size": r["final_size"],
                "queries_with_neighbours": r["covered"],
                "mean_support": r["mean_support"],
            }
            for name, r in (("knn", knn), ("sketch", sketch))
        },
        "base_model": {"kind": "logistic MF (dim 16, L2 1e-4, Adam)", "epochs": epochs, "train_seconds": train_s},
        "key": {
            "user": f"hashed id, {config.user_dim}-d",
            "item": "base item factor (hashed id if unseen)",
            "user_share": config.user_share,
            "features": data.features is not None,
        },
        "config": config.model_dump(),
        "seconds": time.perf_counter() - t_start,
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.input, limit=args.limit), indent=2))


if __name__ == "__main__":
    main()
