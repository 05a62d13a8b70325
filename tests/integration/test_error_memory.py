"""Error memory on the real broker: feedback → errors stage → /compensate/, resets, dead letters, restarts."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from memstream.streams.client import Publisher, subscribe
from memstream.streams.codec import decode
from memstream.streams.contracts import DeadLetter, FeedbackEvent, MemoryUpdate, UpdateKind
from tests.integration.harness import Namespace, collect, free_port

pytestmark = pytest.mark.integration

TS = 1_764_000_000.0
SCIFI = [
    "a space opera about a starship crew",
    "robots rebel on a distant planet",
    "time travel to a future city",
    "aliens invade and astronauts fight back",
    "a hacker discovers the world is a simulation",
    "a colony ship drifts between the stars",
]


def feedback(
    user: str,
    i: int,
    label: float,
    prediction: float,
    *,
    version: str = "v1",
    text: str | None = None,
    vector: list[float] | None = None,
) -> FeedbackEvent:
    features = {"text": text} if text is not None else {"vector": vector}
    return FeedbackEvent(
        event_id=f"{user}-{version}-{i}",
        tenant_id="acme",
        user_id=user,
        item_id=f"item{i}",
        features=features,
        prediction=prediction,
        label=label,
        model_version=version,
        ts=TS + i,
    )


def first_batch() -> list[FeedbackEvent]:
    """alice liked every sci-fi film the model gave 0.2; bob disliked the ones it gave 0.8; carol (numeric
    features only) liked everything."""
    return (
        [feedback("alice", i, 1.0, 0.2, text=t) for i, t in enumerate(SCIFI)]
        + [feedback("bob", i, 0.0, 0.8, text=t) for i, t in enumerate(SCIFI)]
        + [feedback("carol", i, 1.0, 0.3, vector=[1.0, 0.5 * i, 0.0]) for i in range(4)]
    )


def query(user: str, y_base: float, *, version: str = "v1", **extra) -> dict:
    features = {"vector": [1.0, 1.0, 0.0]} if user == "carol" else {"text": "a starship lost near a black hole"}
    return {
        "tenant_id": "acme",
        "user_id": user,
        "model_version": version,
        "y_base": y_base,
        "features": features,
        **extra,
    }


async def wait_updates(updates, seen: list[MemoryUpdate], done, workers, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done(seen):
        assert time.monotonic() < deadline, f"timed out; saw {[(u.kind, u.ids) for u in seen]}"
        for proc in workers:
            assert proc.poll() is None, "a worker died"
        seen.extend(await updates.poll(timeout=0.5))


def stored(seen: list[MemoryUpdate]) -> set[str]:
    return {u.ids[0] for u in seen if u.kind == UpdateKind.ERROR_STORED}


class Worker:
    """One worker process of the namespace, with its HTTP port."""

    def __init__(self, ns: Namespace, name: str, port: int, **env: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = ns.start_worker(name, stages="errors,web", MEMSTREAM_WORKER__WEB_PORT=str(port), **env)

    async def post(self, http: aiohttp.ClientSession, body: dict) -> tuple[int, dict]:
        async with http.post(f"{self.url}/compensate/", json=body) as response:
            return response.status, await response.json(content_type=None)

    async def ready(self, http: aiohttp.ClientSession, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, "the worker died"
            try:
                async with http.get(f"{self.url}/healthz/") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "the worker's web server never came up"
            await asyncio.sleep(0.3)


async def test_feedback_compensates_dead_letters_resets_and_survives_a_restart(kafka_bootstrap, tmp_path):
    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    port = free_port()
    batch = first_batch()
    seen: list[MemoryUpdate] = []
    try:
        async with subscribe(tenant_id="acme", kafka=ns.kafka) as updates, aiohttp.ClientSession() as http:
            worker = Worker(ns, "w", port)
            async with Publisher(ns.kafka) as pub:
                await pub.publish_many(batch)
                bad = orjson.dumps({**batch[0].model_dump(mode="json"), "event_id": "bad-1", "prediction": 1.5})
                await pub.publish_raw(ns.kafka.topics.feedback, bad, key=b"acme/alice")
                await pub.publish_raw(ns.kafka.topics.feedback, b"{not json", key=b"acme/alice")
            await wait_updates(updates, seen, lambda s: stored(s) >= {f.event_id for f in batch}, [worker.proc])
            await worker.ready(http)

            status, alice = await worker.post(http, query("alice", 0.2))
            assert status == 200 and alice["backend"] == "knn" and alice["compensated"]
            assert alice["y"] > 0.4, alice  # her similar items were all positive: pushed up from 0.2
            status, bob = await worker.post(http, query("bob", 0.8))
            assert bob["y"] < 0.6, bob
            status, carol = await worker.post(http, query("carol", 0.3))
            assert carol["y"] > 0.45, carol
            status, both = await worker.post(http, {"queries": [query("alice", 0.2), query("bob", 0.8)]})
            assert status == 200 and [r["y"] for r in both["results"]] == pytest.approx([alice["y"], bob["y"]])
            status, error = await worker.post(http, query("alice", 1.7))
            assert status == 400 and "y_base" in str(error)
            status, error = await worker.post(http, query("alice", 0.2, backend="sketch"))
            assert status == 400 and "sketch" in str(error)

            letters = [
                decode(v, DeadLetter)
                for v in await collect(ns.kafka, ns.kafka.topics.dead_letters, lambda v: len(v) >= 2, timeout=30)
            ]
            assert sorted(d.stage for d in letters) == ["errors", "errors"]
            assert any("prediction" in d.reason for d in letters) and any("JSON" in d.reason for d in letters)

            async with Publisher(ns.kafka) as pub:  # a new model: the old errors say nothing about it
                await pub.publish(feedback("alice", 100, 0.0, 0.5, version="v2", text=SCIFI[0]))
            await wait_updates(updates, seen, lambda s: "alice-v2-100" in stored(s), [worker.proc])
            reset = [u for u in seen if u.kind == UpdateKind.ERRORS_RESET]
            assert reset and reset[0].ids == ["v2"] and reset[0].payload["removed"] == len(batch)
            status, old = await worker.post(http, query("alice", 0.2))
            assert old["y"] == 0.2 and not old["compensated"]
            status, new = await worker.post(http, query("alice", 0.2, version="v2"))
            assert new["y"] < 0.2 and new["neighbour_ids"] == ["alice-v2-100"]

            ns.stop_workers()  # restart on the same state dir: the memory is the store's
            worker = Worker(ns, "w", port)
            await worker.ready(http)
            status, after = await worker.post(http, query("alice", 0.2, version="v2"))
            assert status == 200 and after["y"] == pytest.approx(new["y"])
            status, old = await worker.post(http, query("bob", 0.8))
            assert old["y"] == 0.8

            async with Publisher(ns.kafka) as pub:  # version state survived too: v1 stays retired
                await pub.publish_many(
                    [
                        feedback("alice", 200, 1.0, 0.2, text=SCIFI[1]),
                        feedback("alice", 101, 0.0, 0.5, version="v2", text=SCIFI[2]),
                    ]
                )
            await wait_updates(updates, seen, lambda s: "alice-v2-101" in stored(s), [worker.proc])
            assert "alice-v1-200" not in stored(seen)
            assert len({u.update_id for u in seen if u.kind == UpdateKind.ERRORS_RESET}) == 1
    finally:
        ns.stop_workers()
        print(ns.logs()[-3000:])


async def test_sketch_backend_survives_a_restart_and_lambda_zero_returns_the_base(kafka_bootstrap, tmp_path):
    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    port = free_port()
    batch = first_batch()
    seen: list[MemoryUpdate] = []
    try:
        async with subscribe(tenant_id="acme", kafka=ns.kafka) as updates, aiohttp.ClientSession() as http:
            worker = Worker(ns, "w", port, MEMSTREAM_ERRORS__BACKEND="sketch")
            async with Publisher(ns.kafka) as pub:
                await pub.publish_many(batch)
            await wait_updates(updates, seen, lambda s: stored(s) >= {f.event_id for f in batch}, [worker.proc])
            await worker.ready(http)
            status, alice = await worker.post(http, query("alice", 0.2))
            assert status == 200 and alice["backend"] == "sketch" and alice["y"] > 0.3, alice
            status, bob = await worker.post(http, query("bob", 0.8))
            assert bob["y"] < 0.7, bob
            status, knn = await worker.post(http, query("alice", 0.2, backend="knn"))
            assert knn["backend"] == "knn" and knn["y"] > 0.4

            ns.stop_workers()  # the new process rebuilds its sketch from the durable errors collection
            worker = Worker(ns, "w", port, MEMSTREAM_ERRORS__BACKEND="sketch")
            await worker.ready(http)
            status, again = await worker.post(http, query("alice", 0.2))
            assert again["backend"] == "sketch" and again["y"] == pytest.approx(alice["y"], abs=1e-6)
            assert again["support"] == pytest.approx(alice["support"])

            ns.stop_workers()  # λ = 0 through settings: the memory is there, the answer is the base
            worker = Worker(ns, "w", port, MEMSTREAM_COMPENSATION__LAM="0")
            await worker.ready(http)
            status, plain = await worker.post(http, query("alice", 0.2))
            assert plain["compensated"] and plain["y"] == 0.2
    finally:
        ns.stop_workers()
        print(ns.logs()[-3000:])
