"""The errors stage without a broker: keys, the writer's policy → store/sketch/announcements, compensation."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from memstream.agents.compensate import CompensateError, compensate, compensate_many, service
from memstream.agents.errors import FeedbackWriter
from memstream.agents.runtime import Runtime
from memstream.agents.settings import ErrorsStageSettings, Settings, WorkerSettings
from memstream.agents.store import EdgeStore, ErrorPoint, StoreConfig
from memstream.models.compensation import CompensationConfig, fit_dim, hashed_vector, memory_key
from memstream.streams.contracts import FeedbackEvent, MemoryUpdate

DIM = 384
TS = 1_764_000_000.0


def fake_embed(texts: list[str]) -> np.ndarray:
    """Texts about one topic (the word before ':') get nearby vectors."""
    out = []
    for text in texts:
        topic, _, rest = text.partition(":")
        v = hashed_vector(topic, DIM, "topic") + 0.3 * hashed_vector(rest, DIM, "rest")
        out.append(v / np.linalg.norm(v))
    return np.asarray(out, dtype=np.float32)


def make_runtime(tmp_path, backend: str = "knn", **comp) -> Runtime:
    settings = Settings(
        worker=WorkerSettings(state_dir=tmp_path),
        store=StoreConfig(dim=DIM),
        compensation=CompensationConfig(**comp),
        errors=ErrorsStageSettings(backend=backend),
    )
    runtime = Runtime(settings)

    async def embed(texts: list[str]) -> np.ndarray:
        return fake_embed(texts)

    runtime.embed = embed  # type: ignore[method-assign]
    return runtime


def feedback(
    i: int,
    user: str,
    label: float,
    *,
    version: str = "v1",
    topic: str = "scifi",
    ts: float | None = None,
    tenant: str = "acme",
    prediction: float = 0.2,
    event_id: str | None = None,
) -> FeedbackEvent:
    return FeedbackEvent(
        event_id=event_id or f"{user}-{version}-{i}",
        tenant_id=tenant,
        user_id=user,
        item_id=f"item{i}",
        features={"text": f"{topic}: film number {i}"},
        prediction=prediction,
        label=label,
        model_version=version,
        ts=TS + i if ts is None else ts,
    )


class Harness:
    """A FeedbackWriter on a runtime, keeping version states the way the table would."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.updates: list[MemoryUpdate] = []
        self.states: dict[str, dict] = {}

        async def announce(key: bytes, update: MemoryUpdate) -> None:
            self.updates.append(update)

        self.writer = FeedbackWriter(runtime, announce)
        self.writer.memory_service.fed = True

    async def write(self, records: list[FeedbackEvent], tag: str = "0:0") -> None:
        keys = await self.writer.memory_service.keys([(r.user_id, r.features.text, r.features.vector) for r in records])
        tenants = {r.tenant_id for r in records}
        states = {t: s for t, s in self.states.items() if t in tenants}
        self.states.update(await self.writer.write(list(zip(records, keys)), states, tag))

    def kinds(self, kind: str) -> list[MemoryUpdate]:
        return [u for u in self.updates if u.kind == kind]


async def ask(
    runtime: Runtime, user: str, y_base: float, *, version: str = "v1", topic: str = "scifi", backend: str | None = None
) -> dict:
    return await compensate(
        runtime, "acme", user, version, y_base=y_base, features_text=f"{topic}: a new film", backend=backend
    )


# -- keys ---------------------------------------------------------------------------------------------
def test_memory_key_fits_any_layout_into_the_store_dim():
    cfg = CompensationConfig()
    rng = np.random.default_rng(0)
    for text, vec in (
        (rng.standard_normal(384), None),
        (None, rng.standard_normal(7)),
        (rng.standard_normal(384), rng.standard_normal(5000)),
    ):
        key = memory_key(text, vec, "alice", cfg, DIM)
        assert key.shape == (DIM,) and key.dtype == np.float32
        assert abs(float(np.linalg.norm(key)) - 1) < 1e-5
    a, b = rng.standard_normal(10), rng.standard_normal(10)
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert float(fit_dim(a, 320) @ fit_dim(b, 320)) == pytest.approx(cos, abs=1e-6)  # padding is exact
    a, b = rng.standard_normal(384), rng.standard_normal(384)
    b = a + 0.8 * b
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert float(fit_dim(a, 320) @ fit_dim(b, 320)) == pytest.approx(cos, abs=0.15)  # projection: close
    same_user = float(memory_key(a, None, "alice", cfg, DIM) @ memory_key(-a, None, "alice", cfg, DIM))
    other_user = float(memory_key(a, None, "alice", cfg, DIM) @ memory_key(a, None, "bob", cfg, DIM))
    assert same_user > 0.7 and other_user < 0.35


# -- the store's scroll_errors --------------------------------------------------------------------------
async def test_scroll_errors_oldest_first_by_ids_and_tenant(tmp_path):
    rng = np.random.default_rng(0)

    def point(tenant: str, event_id: str, ts: float) -> ErrorPoint:
        v = rng.standard_normal(8).astype(np.float32)
        return ErrorPoint(tenant, "u", "i", event_id, "v1", 1.0, 0.5, ts, v / np.linalg.norm(v))

    async with EdgeStore(StoreConfig(path=tmp_path / "edge", dim=8)) as store:
        await store.upsert_errors([point("t", f"e{i}", ts) for i, ts in enumerate([5.0, 1.0, 3.0])])
        await store.upsert_errors([point("other", "e0", 0.0)])
        got = await store.scroll_errors("t", with_vectors=True)
        assert [p.event_id for p in got] == ["e1", "e2", "e0"]
        assert all(p.vector is not None and len(p.vector) == 8 for p in got)
        assert [p.event_id for p in await store.scroll_errors("t", event_ids=["e0", "nope"])] == ["e0"]
        assert await store.scroll_errors("t", event_ids=[]) == []
        assert [p.event_id for p in await store.scroll_errors("t", limit=1)] == ["e1"]


# -- writer + kNN serving ------------------------------------------------------------------------------
async def test_feedback_is_stored_announced_and_compensates(tmp_path):
    runtime = make_runtime(tmp_path)
    h = Harness(runtime)
    await h.write(
        [feedback(i, "alice", 1.0) for i in range(6)] + [feedback(i, "bob", 0.0, prediction=0.8) for i in range(6)]
    )
    assert len(h.kinds("error_stored")) == 12
    stored = h.kinds("error_stored")[0]
    assert stored.user_id == "alice" and stored.payload["model_version"] == "v1"
    assert await (await runtime.store()).count("errors", "acme") == 12

    alice = await ask(runtime, "alice", 0.2)
    bob = await ask(runtime, "bob", 0.8)
    assert alice["y"] > 0.5 and alice["compensated"] and alice["backend"] == "knn"
    assert bob["y"] < 0.5
    assert set(alice["neighbour_ids"]) >= {f"alice-v1-{i}" for i in range(6)}
    both = await compensate_many(
        runtime,
        [
            {
                "tenant_id": "acme",
                "user_id": "alice",
                "model_version": "v1",
                "y_base": 0.2,
                "features": {"text": "scifi: a new film"},
            },
            {
                "tenant_id": "acme",
                "user_id": "bob",
                "model_version": "v1",
                "y_base": 0.8,
                "features": {"text": "scifi: a new film"},
            },
        ],
    )
    assert [r["y"] for r in both] == pytest.approx([alice["y"], bob["y"]])
    other = await compensate(runtime, "elsewhere", "alice", "v1", y_base=0.2, features_text="scifi: x")
    assert other["y"] == 0.2 and not other["compensated"]
    await runtime.close()


async def test_new_model_version_resets_and_old_one_is_refused(tmp_path):
    runtime = make_runtime(tmp_path)
    h = Harness(runtime)
    await h.write([feedback(i, "alice", 1.0) for i in range(4)])
    await h.write([feedback(0, "alice", 0.0, version="v2", ts=TS + 10, prediction=0.5)])
    resets = h.kinds("errors_reset")
    assert len(resets) == 1 and resets[0].ids == ["v2"] and resets[0].payload["removed"] == 4
    assert await (await runtime.store()).count("errors", "acme") == 1
    assert (await ask(runtime, "alice", 0.2))["y"] == 0.2  # v1 memory is gone
    assert (await ask(runtime, "alice", 0.2, version="v2"))["y"] < 0.2
    before = len(h.updates)
    await h.write([feedback(9, "alice", 1.0, version="v1", ts=TS + 11)])  # late feedback of a retired model
    assert len(h.updates) == before and await (await runtime.store()).count("errors", "acme") == 1
    assert h.states["acme"]["current"] == "v2" and h.states["acme"]["retired"] == ["v1"]
    await runtime.close()


async def test_capacity_and_ttl_evict_and_announce(tmp_path):
    runtime = make_runtime(tmp_path, capacity=3, ttl_s=100.0)
    h = Harness(runtime)
    await h.write([feedback(i, "alice", 1.0, ts=TS + i) for i in range(5)], tag="1:4")
    evicted = h.kinds("errors_evicted")
    assert [(u.payload["reason"], u.payload["count"]) for u in evicted] == [("capacity", 2)]
    assert evicted[0].ids == ["capacity", "1:4"]
    await h.write([feedback(99, "alice", 1.0, ts=TS + 150)], tag="1:5")
    assert [(u.payload["reason"], u.payload["count"]) for u in h.kinds("errors_evicted")][1:] == [("ttl", 3)]
    assert await (await runtime.store()).count("errors", "acme") == 1
    await runtime.close()


async def test_a_replayed_batch_changes_nothing(tmp_path):
    runtime = make_runtime(tmp_path, backend="sketch")
    h = Harness(runtime)
    batch = [feedback(i, "alice", 1.0) for i in range(5)]
    await h.write(batch)
    first = await ask(runtime, "alice", 0.2)
    ids = [u.update_id for u in h.updates]
    await h.write(batch)  # redelivery: same points, same update ids, the sketch does not count twice
    assert [u.update_id for u in h.updates[len(ids) :]] == ids
    assert await (await runtime.store()).count("errors", "acme") == 5
    again = await ask(runtime, "alice", 0.2)
    assert again["backend"] == "sketch" and again["support"] == first["support"] and again["y"] == first["y"]
    await runtime.close()


# -- the sketch backend -----------------------------------------------------------------------------------
async def test_sketch_serves_and_is_rebuilt_after_a_restart(tmp_path):
    runtime = make_runtime(tmp_path, backend="sketch")
    h = Harness(runtime)
    await h.write(
        [feedback(i, "alice", 1.0) for i in range(8)] + [feedback(i, "bob", 0.0, prediction=0.8) for i in range(8)]
    )
    sketch = await ask(runtime, "alice", 0.2)
    knn = await ask(runtime, "alice", 0.2, backend="knn")
    assert sketch["backend"] == "sketch" and sketch["y"] > 0.4 and knn["y"] > 0.4
    assert (await ask(runtime, "bob", 0.8))["y"] < 0.6
    await runtime.close()

    restarted = make_runtime(tmp_path, backend="sketch")  # same state dir: only the store survives
    service(restarted).fed = True
    rebuilt = await ask(restarted, "alice", 0.2)
    assert rebuilt["support"] == sketch["support"] and rebuilt["y"] == pytest.approx(sketch["y"], abs=1e-6)
    await restarted.close()


async def test_sketch_follows_resets_and_forget(tmp_path):
    runtime = make_runtime(tmp_path, backend="sketch")
    h = Harness(runtime)
    await h.write([feedback(i, "alice", 1.0) for i in range(4)])
    await h.write([feedback(0, "alice", 0.0, version="v2", ts=TS + 10, prediction=0.5)])
    assert (await ask(runtime, "alice", 0.2))["y"] == 0.2
    v2 = await ask(runtime, "alice", 0.2, version="v2")
    assert v2["y"] < 0.2 and 0 < v2["support"] <= 1.0  # support: mean bucket count over the arrays
    await (await runtime.store()).forget("acme", "alice")
    service(runtime).forget_tenant("acme")
    assert not (await ask(runtime, "alice", 0.2, version="v2"))["compensated"]
    await runtime.close()


# -- settings and input checks ------------------------------------------------------------------------------
async def test_lambda_zero_returns_the_base_prediction(tmp_path):
    runtime = make_runtime(tmp_path, lam=0.0)
    h = Harness(runtime)
    await h.write([feedback(i, "alice", 1.0) for i in range(4)])
    answer = await ask(runtime, "alice", 0.2)
    assert answer["compensated"] and answer["y"] == 0.2
    await runtime.close()


async def test_bad_queries_are_refused(tmp_path):
    runtime = make_runtime(tmp_path)
    with pytest.raises(ValidationError):
        await compensate(runtime, "acme", "alice", "v1", y_base=1.5, features_text="x")
    with pytest.raises(ValidationError):
        await compensate(runtime, "acme", "alice", "v1", y_base=0.5)  # no features
    with pytest.raises(CompensateError, match="sketch"):
        await compensate(runtime, "acme", "alice", "v1", y_base=0.5, features_text="x", backend="sketch")
    await runtime.close()
