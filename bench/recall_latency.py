"""Recall latency of the embedded (qdrant-edge) store at 100k events.

Fills a fresh edge store through the store API with synthetic but structured 384-d unit vectors (sessions
drift around a theme, episodes around a topic, events around their episode's topic), then measures
two-stage ``recall()`` end to end, stage 1 alone, event-level search and the default hybrid event recall
(``recall_events``: dense + lexical prefetches fused in the store, budget 20; texts are Zipf-distributed
words of the episode's own vocabulary); the query embedding on its own; the upsert rate; reopen time;
and how long the event loop was ever stalled while all of that ran. With ``--http N``, N HTTP recalls to
workers serving the store, with auth off and with an API key side by side (``auth`` in the JSON, see
``_http_phase``). JSON on stdout (or ``--out``), progress on stderr.

    python -m bench.recall_latency                 # 100k events, ~1 minute on 2 cores
    python -m bench.recall_latency --events 20000  # quicker
    python -m bench.recall_latency --http 500      # also POST /recall/, auth off and with an API key
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from memstream.agents.store import EdgeStore, EpisodePoint, EventPoint, StoreConfig, recall, recall_events

err = Console(stderr=True)


@dataclass
class Corpus:
    events: list[EventPoint]
    episodes: list[EpisodePoint]
    topics: np.ndarray  # (n_episodes, dim): each episode's topic, to build queries from


def _normalise(m: np.ndarray) -> np.ndarray:
    return (m / np.linalg.norm(m, axis=-1, keepdims=True)).astype(np.float32)


def make_corpus(
    n_events: int, per_episode: int, per_session: int, tenants: int, users: int, dim: int, seed: int
) -> Corpus:
    rng = np.random.default_rng(seed)
    n_episodes = n_events // per_episode
    n_sessions = max(1, n_episodes // per_session)
    themes = _normalise(rng.standard_normal((n_sessions, dim)))
    session_of = np.arange(n_episodes) // per_session % n_sessions
    topics = _normalise(themes[session_of] + 1.2 * _normalise(rng.standard_normal((n_episodes, dim))))
    noise = _normalise(rng.standard_normal((n_episodes * per_episode, dim)))
    vectors = _normalise(np.repeat(topics, per_episode, axis=0) + 0.6 * noise)
    events: list[EventPoint] = []
    episodes: list[EpisodePoint] = []
    vocabulary = 20_000
    zipf = 1.0 / np.arange(1, 201)
    zipf /= zipf.sum()
    for e in range(n_episodes):
        words = rng.integers(0, vocabulary, 200)  # the episode's own vocabulary, Zipf-weighted
        texts = [" ".join(f"w{words[k]}" for k in rng.choice(200, 12, p=zipf)) for _ in range(per_episode)]
        s = int(session_of[e])
        tenant, user, session = f"tenant-{s % tenants}", f"user-{s % (tenants * users)}", f"session-{s}"
        index = e % per_session
        t0 = 1_700_000_000.0 + s * 86_400.0 + index * per_episode * 30.0
        ids = tuple(f"{session}-{index}-{j}" for j in range(per_episode))
        rows = vectors[e * per_episode : (e + 1) * per_episode]
        for j, event_id in enumerate(ids):
            events.append(
                EventPoint(tenant, user, session, event_id, t0 + 30.0 * j, texts[j], rows[j], episode_index=index)
            )
        centroid = _normalise(rows.mean(axis=0))
        episodes.append(
            EpisodePoint(tenant, user, session, index, t0, t0 + 30.0 * (per_episode - 1), ids, centroid, state="sealed")
        )
    return Corpus(events, episodes, topics)


class StallMeter:
    """Measures how late a 2 ms sleep on the event loop wakes up: the worst is the longest stall."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.002)
            self.lags.append(time.perf_counter() - t - 0.002)

    def start(self) -> None:
        self.lags = []
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> dict[str, float]:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        lags = np.asarray(self.lags or [0.0]) * 1e3
        return {"max_ms": round(float(lags.max()), 2), "p99_ms": round(float(np.percentile(lags, 99)), 2)}


def _embedding_latency(n: int) -> dict[str, float]:
    """One recall query's embedding (batch 1) with the pipeline's default embedder: the part of an HTTP
    recall the store benchmark above leaves out."""
    from memstream.models.embedder import Embedder, EmbedderConfig

    embedder = Embedder(EmbedderConfig())
    questions = [f"what did we say about the trip to place number {i} last spring?" for i in range(n)]
    seconds = []
    for q in questions:
        t0 = time.perf_counter()
        embedder.embed([q])
        seconds.append(time.perf_counter() - t0)
    return _stats(seconds)


def _wait_healthy(url: str, deployment, timeout: float = 120.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz/", timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the worker did not serve /healthz/ within {timeout:.0f} s:\n" + deployment.logs()
                ) from None
            time.sleep(0.5)


def _wait_keys(url: str, header: dict[str, str], deployment, timeout: float = 60.0) -> None:
    import urllib.error
    import urllib.request

    body = orjson.dumps({"event_ids": ["none"]})
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(
            f"{url}/get/", data=body, headers={"Content-Type": "application/json", **header}
        )
        try:
            urllib.request.urlopen(request, timeout=10).read()
            return
        except urllib.error.HTTPError as exc:
            if exc.code not in (401, 503) or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the keys worker did not accept its key ({exc.code}):\n" + deployment.logs()
                ) from None
            time.sleep(0.2)


def _http_phase(path: Path, corpus: Corpus, n: int, seed: int, auth: bool = True) -> dict[str, object]:
    """``POST /recall/`` (event mode, budget 20) to a worker serving the filled store: query embedding,
    hybrid search, JSON and HTTP included. Needs a broker (MEMSTREAM_KAFKA__BOOTSTRAP) for the worker.

    With ``auth``, two web workers serve identical copies of the store side by side, one with
    ``MEMSTREAM_AUTH__MODE=none`` and one with ``keys`` (a read key per tenant on its access topic, sent as
    ``Authorization: Bearer``), and each query goes to both, in random order, so that both
    modes are timed under the same load; the result has both and the difference (``auth``). Both workers
    run the same rate limiter (set high enough never to refuse), so the difference is the credential's check.
    Without ``auth``: one worker, auth off."""
    import urllib.request

    from memstream.agents.settings import get_settings
    from memstream.deploy.workers import Deployment

    bootstrap = get_settings().kafka.bootstrap
    rng, order = np.random.default_rng(seed + 2), np.random.default_rng(seed + 3)
    modes = ("none", "keys") if auth else ("none",)
    with tempfile.TemporaryDirectory(prefix="memstream-bench-http-") as tmp:
        deployments = {mode: Deployment(bootstrap, Path(tmp) / mode, partitions=1) for mode in modes}
        urls: dict[str, str] = {}
        headers: dict[str, dict[str, str]] = {mode: {} for mode in modes}
        stores = {mode: path for mode in modes}
        if auth:  # its own copy, made before any worker opens the store: one process per store directory
            stores["keys"] = Path(tmp) / "edge-keys"
            shutil.copytree(path, stores["keys"])
        try:
            for mode, deployment in deployments.items():
                asyncio.run(deployment.create_topics())
                if mode == "keys":
                    tenants = sorted({e.tenant_id for e in corpus.events})
                    keys = {t: asyncio.run(deployment.create_key(t, ["read"])) for t in tenants}
                    headers["keys"] = {t: {"Authorization": f"Bearer {k}"} for t, k in keys.items()}
                deployment.start_worker(
                    "web",
                    stages="web",
                    MEMSTREAM_STORE__PATH=str(stores[mode]),
                    MEMSTREAM_AUTH__MODE=mode,
                    MEMSTREAM_HTTP__RATE_LIMIT="1000000/second",
                )
                urls[mode] = f"http://127.0.0.1:{deployment.ports['web']}"
            for mode, deployment in deployments.items():
                _wait_healthy(urls[mode], deployment)
            if auth:  # a keys worker answers 503 until it has read its access topic
                _wait_keys(urls["keys"], next(iter(headers["keys"].values())), deployments["keys"])

            seconds: dict[str, list[float]] = {mode: [] for mode in modes}
            returned = dict.fromkeys(modes, 0)
            for q in range(n + 20):  # the first 20 warm the workers up (model load, caches, the keys' load)
                event = corpus.events[int(rng.integers(len(corpus.events)))]
                body = orjson.dumps(
                    {
                        "query": " ".join(event.text.split()[:5]),
                        "tenant_id": event.tenant_id,
                        "user_id": event.user_id if q % 2 else None,
                        "budget": 20,
                    }
                )
                for mode in modes if order.random() < 0.5 else modes[::-1]:  # which goes first: at random
                    extra = headers[mode].get(event.tenant_id, {})
                    request = urllib.request.Request(
                        f"{urls[mode]}/recall/", data=body, headers={"Content-Type": "application/json", **extra}
                    )
                    t0 = time.perf_counter()
                    answer = orjson.loads(urllib.request.urlopen(request, timeout=30).read())
                    if q >= 20:
                        seconds[mode].append(time.perf_counter() - t0)
                        returned[mode] += len(answer["events"])
            stats = {
                mode: _stats(seconds[mode]) | {"mean_events_returned": round(returned[mode] / n, 2)} for mode in modes
            }
            if not auth:
                return {"none": stats["none"]}
            diff = (np.asarray(seconds["keys"]) - np.asarray(seconds["none"])) * 1e3
            return stats | {
                "p50_overhead_ms": round(stats["keys"]["p50_ms"] - stats["none"]["p50_ms"], 3),
                "p95_overhead_ms": round(stats["keys"]["p95_ms"] - stats["none"]["p95_ms"], 3),
                "paired_diff_ms": {  # keys minus none, the same query, back to back
                    "p50": round(float(np.percentile(diff, 50)), 3),
                    "mean": round(float(diff.mean()), 3),
                },
                "method": "two web workers (auth none / keys) on copies of the store; each query to both, "
                "in random order; keys: one read key per tenant, Authorization: Bearer",
            }
        finally:
            for deployment in deployments.values():
                deployment.stop_workers()
                asyncio.run(deployment.delete_topics())


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def _du_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


async def run(
    path: Path, corpus: Corpus, queries: int, k_s: int, k_c: int, dim: int, batch: int, seed: int
) -> dict[str, object]:
    rng = np.random.default_rng(seed + 1)
    config = StoreConfig(path=path, dim=dim, upsert_batch=batch)
    store = EdgeStore(config)
    meter = StallMeter()
    result: dict[str, object] = {}
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )
    with progress:
        t = time.perf_counter()
        await store.open()
        result["create_s"] = round(time.perf_counter() - t, 3)

        # -- fill: a session's events, then its episodes, as the pipeline would write them
        meter.start()
        fill = progress.add_task("upsert events+episodes", total=len(corpus.events))
        per_episode = len(corpus.events) // len(corpus.episodes)
        step_eps = max(1, 1024 // per_episode)
        t = time.perf_counter()
        for start in range(0, len(corpus.episodes), step_eps):
            eps = corpus.episodes[start : start + step_eps]
            evs = corpus.events[start * per_episode : (start + len(eps)) * per_episode]
            await store.upsert_events(evs)
            await store.upsert_episodes(eps)
            progress.advance(fill, len(evs))
        fill_s = time.perf_counter() - t
        n_points = len(corpus.events) + len(corpus.episodes)
        result["fill"] = {
            "events": len(corpus.events),
            "episodes": len(corpus.episodes),
            "seconds": round(fill_s, 2),
            "events_per_s": round(len(corpus.events) / fill_s),
            "points_per_s": round(n_points / fill_s),
            "loop_stall": await meter.stop(),
        }

        # -- queries: a noisy view of a random episode's topic, within its tenant (half also its user)
        async def query_phase(label: str, n: int) -> dict[str, object]:
            meter.start()
            task = progress.add_task(label, total=n)
            full, stage1, events_t, hybrid, found = [], [], [], [], 0
            cpu = {"recall": 0.0, "stage1": 0.0, "events": 0.0, "hybrid": 0.0}  # process CPU: load-independent
            for q in range(n):
                e = int(rng.integers(len(corpus.episodes)))
                ep = corpus.episodes[e]
                vec = _normalise(corpus.topics[e] + 0.8 * _normalise(rng.standard_normal(dim)))
                user = ep.user_id if q % 2 else None
                t0, c0 = time.perf_counter(), time.process_time()
                got = await recall(store, vec, ep.tenant_id, user_id=user, k_s=k_s, k_c=k_c)
                full.append(time.perf_counter() - t0)
                cpu["recall"] += time.process_time() - c0
                found += any(
                    r.is_hit and (r.session_id, r.episode_index) == (ep.session_id, ep.episode_index) for r in got
                )
                t0, c0 = time.perf_counter(), time.process_time()
                await store.search_episodes(vec, tenant_id=ep.tenant_id, user_id=user, limit=k_s)
                stage1.append(time.perf_counter() - t0)
                cpu["stage1"] += time.process_time() - c0
                t0, c0 = time.perf_counter(), time.process_time()
                await store.search_events(vec, tenant_id=ep.tenant_id, user_id=user, limit=10)
                events_t.append(time.perf_counter() - t0)
                cpu["events"] += time.process_time() - c0
                words = " ".join(corpus.events[e * per_episode + int(rng.integers(per_episode))].text.split()[:5])
                t0, c0 = time.perf_counter(), time.process_time()
                await recall_events(store, vec, store.lexical.query(words), ep.tenant_id, user_id=user, budget=20)
                hybrid.append(time.perf_counter() - t0)
                cpu["hybrid"] += time.process_time() - c0
                progress.advance(task)
            per = {k: {"cpu_mean_ms": round(v / n * 1e3, 3)} for k, v in cpu.items()}
            return {
                "recall": _stats(full) | per["recall"] | {"source_episode_in_hits": round(found / n, 3)},
                "stage1_search_episodes": _stats(stage1) | per["stage1"],
                "search_events": _stats(events_t) | per["events"],
                "recall_events_hybrid_budget20": _stats(hybrid) | per["hybrid"],
                "loop_stall": await meter.stop(),
            }

        result["query"] = await query_phase("recall queries", queries)
        result["query_embedding"] = await asyncio.to_thread(_embedding_latency, min(queries, 200))

        # -- reopen
        t = time.perf_counter()
        await store.close()
        close_s = time.perf_counter() - t
        store = EdgeStore(config)
        t = time.perf_counter()
        await store.open()
        result["reopen"] = {
            "close_s": round(close_s, 3),
            "open_s": round(time.perf_counter() - t, 3),
            "events_after": await store.count("events"),
            "episodes_after": await store.count("episodes"),
        }
        result["query_after_reopen"] = await query_phase("recall after reopen", max(1, queries // 5))
        await store.close()
    result["disk_mb"] = _du_mb(path)
    return result


def main(
    events: int = typer.Option(100_000, help="Events to store."),
    per_episode: int = typer.Option(10, help="Events per episode."),
    per_session: int = typer.Option(20, help="Episodes per session."),
    tenants: int = typer.Option(4, help="Tenants (sessions are spread over them)."),
    users: int = typer.Option(25, help="Users per tenant."),
    queries: int = typer.Option(1000, help="Recall queries to time."),
    k_s: int = typer.Option(5, help="Stage-1 hits."),
    k_c: int = typer.Option(1, help="Neighbours each side of a hit."),
    dim: int = typer.Option(384, help="Vector dimension."),
    batch: int = typer.Option(128, help="Points per edge write (StoreConfig.upsert_batch)."),
    path: Path | None = typer.Option(None, help="Store directory (default: a temporary one, removed after)."),
    out: Path | None = typer.Option(None, help="Write the JSON here too."),
    seed: int = typer.Option(0),
    target_p95_ms: float = typer.Option(10.0, help="Recall p95 target."),
    http: int = typer.Option(
        0, help="Also time this many POST /recall/ to a worker serving the store (needs a broker)."
    ),
    http_auth: bool = typer.Option(
        True,
        help="With --http: time each request with auth off and with an API key (two workers side by side; "
        "JSON 'auth': none, keys, p95_overhead_ms).",
    ),
) -> None:
    """Benchmark recall on the embedded store; JSON report."""
    load_before = round(os.getloadavg()[0], 2)  # other processes' load inflates every wall-clock figure
    t = time.perf_counter()
    err.print(f"generating {events:,} events …")
    corpus = make_corpus(events, per_episode, per_session, tenants, users, dim, seed)
    gen_s = time.perf_counter() - t
    tmp = None
    if path is None:
        tmp = tempfile.mkdtemp(prefix="memstream-bench-")
        path = Path(tmp) / "edge"
    elif path.exists() and any(path.iterdir()):
        raise typer.BadParameter(f"{path} is not empty; the benchmark needs a fresh store")
    try:
        measured = asyncio.run(run(path, corpus, queries, k_s, k_c, dim, batch, seed))
        if http:
            which = "workers with auth none and keys" if http_auth else "a worker"
            err.print(f"{http} recall requests over HTTP to {which} serving the store …")
            timed = _http_phase(path, corpus, http, seed, auth=http_auth)
            measured["http_recall_events_budget20"] = timed.pop("none")  # auth off, as before
            if http_auth:
                measured["auth"] = {"none": measured["http_recall_events_budget20"], **timed}
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    p95 = measured["query"]["recall"]["p95_ms"]  # type: ignore[index]
    report = {
        "benchmark": "recall_latency",
        "backend": "edge",
        "params": {
            "events": events,
            "per_episode": per_episode,
            "per_session": per_session,
            "tenants": tenants,
            "users_per_tenant": users,
            "queries": queries,
            "k_s": k_s,
            "k_c": k_c,
            "dim": dim,
            "upsert_batch": batch,
            "seed": seed,
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "qdrant_edge_py": version("qdrant-edge-py"),
            "load_avg_1m_before": load_before,
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
        },
        "generate_s": round(gen_s, 2),
        **measured,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "target": {"recall_p95_ms": target_p95_ms, "met": bool(p95 <= target_p95_ms)},
    }
    data = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    if out is not None:
        out.write_bytes(data)
    sys.stdout.write(data.decode() + "\n")


if __name__ == "__main__":
    typer.run(main)
