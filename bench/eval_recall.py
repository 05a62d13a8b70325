"""Recall quality on conversations: evidence recall at a budget of B returned events, memstream against
flat retrieval baselines measured in the same run.

Input: JSONL as ``../shared/data/README.md`` describes: ``type: event`` records (publishable
`InteractionEvent`s; ``kind: session_end`` closes a session) and ``type: question`` records (``question``,
``tenant_id``, ``user_id``, ``evidence`` event ids, ``category``). Metric per question: the share of its
evidence among the first B events returned, averaged over questions (those with evidence in the input).

Methods, all restricted to the question's tenant and user:

- ``memstream``: the default recall (`agents.store.recall_events`, settings' `RecallConfig`) over a store
  filled by the worker's own code: every event embedded by the pipeline's embedder, segmented by the
  streaming `Segmenter` (session_end flushes), written by ``upsert_events``, sealed episodes'
  members given their context vectors by ``apply_episode_context``, episodes upserted; all in process on
  the embedded store. With ``through_kafka`` the events are published to a real broker instead, a worker
  runs the pipeline, and every question is asked over ``POST /recall/``.
- ``episodes_two_stage``: the episode recall (top episodes by centroid, k_c = 0), episodes best first,
  each episode's events in time order (what ``mode=episodes`` returns).
- ``dense``: flat kNN over the events' own embeddings (cosine).
- ``bm25``: rank_bm25 Okapi over lower-cased ``\\w+`` tokens, no stemming (a common off-the-shelf setup).
- ``rrf``: reciprocal-rank fusion (k = 60) of the top 200 of ``dense`` and ``bm25``.

Run: ``memstream eval recall --input FILE --json`` (``python -m bench.eval_recall FILE``).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BUDGETS = (5, 10, 20, 50)
RRF_K = 60
RRF_DEPTH = 200
Ranker = Callable[[int], list[str]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- data --------------------------------------------------------------------------------------------------
def load(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(event records in input order, session_end included; questions) from a recall JSONL file."""
    events, questions = [], []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            kind = record.pop("type", None)
            if kind == "event":
                events.append(record)
            elif kind == "question":
                if not record.get("evidence") or not record.get("question"):
                    raise ValueError(f"{path}:{number}: a question needs 'question' and 'evidence'")
                questions.append(record)
            else:
                raise ValueError(f"{path}:{number}: 'type' must be 'event' or 'question', got {kind!r}")
    if not events or not questions:
        raise ValueError(f"{path}: needs events and questions ({len(events)} events, {len(questions)} questions)")
    return events, questions


def is_turn(event: dict[str, Any]) -> bool:
    return event.get("kind", "message") != "session_end"


def recall_at(order: Sequence[str], evidence: set[str], budget: int) -> float:
    return len(set(order[:budget]) & evidence) / len(evidence)


# -- baselines ---------------------------------------------------------------------------------------------
def _bm25_tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class Baselines:
    """Flat retrieval over one scope's turns (tenant + user), as the issue's baselines are defined."""

    def __init__(self, turns: list[dict[str, Any]], vectors: np.ndarray) -> None:
        from rank_bm25 import BM25Okapi

        self.ids = [t["event_id"] for t in turns]
        self.vectors = vectors
        self.bm25 = BM25Okapi([_bm25_tokens(t["text"]) for t in turns])

    def dense(self, query_vector: np.ndarray) -> list[str]:
        order = np.argsort(-(self.vectors @ query_vector), kind="stable")
        return [self.ids[i] for i in order]

    def bm25_rank(self, question: str) -> list[str]:
        order = np.argsort(-np.asarray(self.bm25.get_scores(_bm25_tokens(question))), kind="stable")
        return [self.ids[i] for i in order]

    @staticmethod
    def rrf(*rankings: list[str]) -> list[str]:
        scores: dict[str, float] = defaultdict(float)
        for ranking in rankings:
            for rank, event_id in enumerate(ranking[:RRF_DEPTH]):
                scores[event_id] += 1.0 / (RRF_K + rank + 1)
        return sorted(scores, key=lambda e: -scores[e])


# -- memstream in process ----------------------------------------------------------------------------------
async def fill_store(
    store: Any, events: list[dict[str, Any]], vectors: dict[str, np.ndarray], settings: Any
) -> dict[str, int]:
    """Segment the events as the segment stage does and write them as the index stage does."""
    from memstream.agents.store import EpisodePoint, EventPoint
    from memstream.models.segmenter import Segmenter
    from memstream.models.session_state import SessionState

    segmenter = Segmenter(settings.segmentation)
    states: dict[tuple[str, str], SessionState] = {}
    owner: dict[tuple[str, str], str] = {}
    sealed: list[EpisodePoint] = []
    points: list[EventPoint] = []

    def collect(key: tuple[str, str], changes: list[Any]) -> None:
        for change in changes:
            if change.kind == "sealed":
                sealed.append(
                    EpisodePoint(
                        tenant_id=key[0],
                        user_id=owner[key],
                        session_id=key[1],
                        episode_index=change.episode_index,
                        start_ts=change.start_ts,
                        end_ts=change.end_ts,
                        event_ids=tuple(change.event_ids),
                        vector=change.centroid,
                        state="sealed",
                    )
                )

    for event in events:
        key = (event["tenant_id"], event["session_id"])
        owner.setdefault(key, event["user_id"])
        state = states.setdefault(key, SessionState())
        if not is_turn(event):
            collect(key, segmenter.flush(state))
            continue
        vector = vectors[event["event_id"]]
        points.append(EventPoint.from_fields(event, vector=vector))
        collect(key, segmenter.push(state, event["event_id"], float(event["ts"]), vector, event.get("text", "")))
    for key, state in states.items():  # sessions without a session_end: what idle sealing would do
        collect(key, segmenter.flush(state))
    await store.upsert_events(points)
    await store.apply_episode_context(sealed, settings.recall.context_beta)
    await store.upsert_episodes(sealed)
    return {"events": len(points), "episodes": len(sealed)}


def _episode_order(episodes: list[dict[str, Any]]) -> list[str]:
    """Episode-mode results (as `RecalledEpisode.to_dict` gives them, in process or over HTTP) as a ranked
    event list: episodes by score (hits before neighbours), events in time order within each."""

    def rank(e: dict[str, Any]) -> tuple[bool, float]:
        return e["score"] is None, -(e["score"] if e["score"] is not None else e["anchor_score"])

    ranked = sorted(episodes, key=rank)
    return [ev["event_id"] for ep in ranked for ev in ep["events"]]


async def _in_process(events, questions, vectors, q_vectors, settings, budget: int, progress: bool) -> dict[str, Any]:
    from memstream.agents.store import EdgeStore, recall, recall_events

    out: dict[str, Any] = {"memstream": [], "episodes_two_stage": [], "latency_s": []}
    with tempfile.TemporaryDirectory(prefix="memstream-eval-recall-") as tmp:
        async with EdgeStore(settings.store.model_copy(update={"path": Path(tmp)})) as store:
            t0 = time.perf_counter()
            out["stored"] = await fill_store(store, events, vectors, settings)
            log(f"eval recall: stored {out['stored']} in {time.perf_counter() - t0:.1f} s")
            cfg = settings.recall
            for i, q in enumerate(questions):
                start = time.perf_counter()
                found = await recall_events(
                    store,
                    q_vectors[i],
                    store.lexical.query(q["question"]),
                    q["tenant_id"],
                    user_id=q["user_id"],
                    budget=budget,
                    episode_turns=cfg.episode_turns,
                    candidates=cfg.candidates,
                )
                out["latency_s"].append(time.perf_counter() - start)
                out["memstream"].append([e.event_id for e in found])
                episodes = await recall(store, q_vectors[i], q["tenant_id"], user_id=q["user_id"], k_s=budget, k_c=0)
                out["episodes_two_stage"].append(_episode_order([e.to_dict() for e in episodes])[:budget])
                if progress and (i + 1) % 100 == 0:
                    log(f"eval recall: {i + 1}/{len(questions)} questions")
    return out


# -- memstream through Kafka -------------------------------------------------------------------------------
async def _through_kafka(events, questions, budget: int, timeout: float) -> dict[str, Any]:
    import aiohttp

    from memstream.agents.settings import get_settings
    from memstream.deploy.workers import Deployment
    from memstream.streams.client import Publisher, subscribe
    from memstream.streams.contracts import InteractionEvent, UpdateKind

    settings = get_settings()
    turns = {e["event_id"] for e in events if is_turn(e)}
    out: dict[str, Any] = {"memstream": [], "episodes_two_stage": [], "latency_s": []}
    with tempfile.TemporaryDirectory(prefix="memstream-eval-recall-kafka-") as tmp:
        deployment = Deployment(settings.kafka.bootstrap, Path(tmp))
        await deployment.create_topics()
        try:
            deployment.start_worker("w1")
            sealed: set[str] = set()
            async with subscribe(kinds=[UpdateKind.EPISODE_SEALED], kafka=deployment.kafka) as updates:
                async with Publisher(deployment.kafka) as pub:
                    for start in range(0, len(events), 500):
                        chunk = events[start : start + 500]
                        await pub.publish_many([InteractionEvent.model_validate(e) for e in chunk])
                        log(f"eval recall: published {start + len(chunk)}/{len(events)}")
                deadline = time.monotonic() + timeout
                async for update in updates:
                    sealed.update(update.payload.get("event_ids", []))
                    if len(sealed & turns) % 250 < 12:
                        log(f"eval recall: {len(sealed & turns)}/{len(turns)} events sealed in episodes")
                    if turns <= sealed:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{len(turns - sealed)} events not sealed after {timeout} s")
            url = f"http://127.0.0.1:{deployment.ports['w1']}/recall/"
            async with aiohttp.ClientSession() as http:
                for i, q in enumerate(questions):
                    body = {
                        "query": q["question"],
                        "tenant_id": q["tenant_id"],
                        "user_id": q["user_id"],
                        "budget": budget,
                    }
                    start = time.perf_counter()
                    async with http.post(url, json=body) as response:
                        if response.status != 200:
                            raise RuntimeError(f"/recall/ answered {response.status}: {await response.text()}")
                        data = await response.json()
                    out["latency_s"].append(time.perf_counter() - start)
                    out["memstream"].append([e["event_id"] for e in data["events"]])
                    body |= {"mode": "episodes", "k_s": min(budget, 100), "k_c": 0}
                    async with http.post(url, json=body) as response:
                        data = await response.json()
                    out["episodes_two_stage"].append(_episode_order(data["episodes"])[:budget])
                    if (i + 1) % 100 == 0:
                        log(f"eval recall: {i + 1}/{len(questions)} questions over HTTP")
        finally:
            deployment.stop_workers()
            await deployment.delete_topics()
    return out


# -- the run -----------------------------------------------------------------------------------------------
def run(
    input_path: Path,
    budgets: Sequence[int] = BUDGETS,
    through_kafka: bool = False,
    timeout: float = 1200.0,
    progress: bool = True,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    settings: Any = None,
) -> dict[str, Any]:
    """The evaluation; ``embed`` and ``settings`` replace the pipeline's embedder and settings (tests)."""
    from bench.embedding_cache import cached_embeddings
    from memstream.agents.settings import get_settings

    settings = settings or get_settings()
    if through_kafka and (embed is not None or settings is not get_settings()):
        raise ValueError("--through-kafka measures the worker as configured: no stand-in embedder or settings")
    budgets = sorted(set(int(b) for b in budgets))
    if not budgets or budgets[0] < 1:
        raise ValueError("budgets must be positive integers")
    events, questions = load(input_path)
    turns = [e for e in events if is_turn(e)]
    known = {t["event_id"] for t in turns}
    questions = [q for q in questions if set(q["evidence"]) & known]
    log(f"eval recall: {len(turns)} events, {len(questions)} questions; embedding (cached) …")
    turn_vectors = cached_embeddings([t.get("text", "") for t in turns], embed)
    q_vectors = cached_embeddings([q["question"] for q in questions], embed)
    vectors = {t["event_id"]: turn_vectors[i] for i, t in enumerate(turns)}

    scopes: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, t in enumerate(turns):
        scopes[(t["tenant_id"], t["user_id"])].append(i)
    baselines = {key: Baselines([turns[i] for i in rows], turn_vectors[rows]) for key, rows in scopes.items()}

    top = budgets[-1]
    rankings: dict[str, list[list[str]]] = {"dense": [], "bm25": [], "rrf": []}
    for i, q in enumerate(questions):
        base = baselines.get((q["tenant_id"], q["user_id"]))
        if base is None:
            rankings["dense"].append([]), rankings["bm25"].append([]), rankings["rrf"].append([])
            continue
        dense, bm25 = base.dense(q_vectors[i]), base.bm25_rank(q["question"])
        rankings["dense"].append(dense[:top])
        rankings["bm25"].append(bm25[:top])
        rankings["rrf"].append(base.rrf(dense, bm25)[:top])

    if through_kafka:
        found = asyncio.run(_through_kafka(events, questions, top, timeout))
    else:
        found = asyncio.run(_in_process(events, questions, vectors, q_vectors, settings, top, progress))
    rankings = {"memstream": found["memstream"], "episodes_two_stage": found["episodes_two_stage"], **rankings}

    recall: dict[str, dict[str, float]] = {}
    by_category: dict[str, dict[str, dict[str, float]]] = {}
    returned: dict[str, dict[str, float]] = {}
    for method, lists in rankings.items():
        recall[method], returned[method] = {}, {}
        per_cat: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for b in budgets:
            values = []
            for q, order in zip(questions, lists):
                r = recall_at(order, set(q["evidence"]), b)
                values.append(r)
                per_cat[str(q.get("category", "all"))][str(b)].append(r)
            recall[method][str(b)] = round(float(np.mean(values)), 4)
            returned[method][str(b)] = round(float(np.mean([min(len(o), b) for o in lists])), 2)
        by_category[method] = {
            c: {b: round(float(np.mean(v)), 4) for b, v in sorted(d.items(), key=lambda x: int(x[0]))}
            for c, d in sorted(per_cat.items())
        }
    latency = np.asarray(found["latency_s"]) * 1000.0
    return {
        "recall": recall,
        "by_category": by_category,
        "returned": returned,
        "latency_ms": {
            "p50": round(float(np.percentile(latency, 50)), 2),
            "p95": round(float(np.percentile(latency, 95)), 2),
            "what": "memstream recall per question: "
            + (
                "POST /recall/ over HTTP, query embedding included"
                if through_kafka
                else "in process, store query only (the query embedding is batched beforehand)"
            ),
        },
        "data": {
            "input": str(input_path),
            "events": len(turns),
            "questions": len(questions),
            "scopes": len(scopes),
            **({"stored": found["stored"]} if "stored" in found else {}),
        },
        "config": {
            "through_kafka": through_kafka,
            "budgets": budgets,
            "recall": settings.recall.model_dump(),
            "lexical": settings.store.lexical.model_dump(),
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1])), indent=2))
