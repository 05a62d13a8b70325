"""The fault-injecting store (agents/store/faults.py) and what the stages' retries make of its faults: transient
ones (a write cut part way, a timeout, a 5xx) lose nothing, a permanent one is refused at once, a crash is let
through. Over qdrant-client's local mode (the server code path), which is quick to create."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from pydantic import ValidationError
from qdrant_client import AsyncQdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from memstream.agents.retry import Refused, until_done
from memstream.agents.runtime import Runtime
from memstream.agents.settings import Settings
from memstream.agents.store import Collection, EpisodePoint, ErrorPoint, EventPoint, ServerStore, StoreConfig
from memstream.agents.store.faults import FaultyStore, InjectedBug, StoreFaults
from memstream.streams.contracts import InteractionEvent

DIM = 16
TENANT = "acme"


def _store(**config: object) -> ServerStore:
    cfg = StoreConfig(backend="server", url=":memory:", dim=DIM, **config)
    return ServerStore(cfg, client=AsyncQdrantClient(location=":memory:"))


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _events(n: int, seed: int, session: str = "s1") -> list[EventPoint]:
    rng = np.random.default_rng(seed)
    words = ["table", "friday", "dinner", "train", "ticket", "hotel", "rain", "movie"]
    return [
        EventPoint.from_event(
            InteractionEvent(
                event_id=f"{session}-{seed}-{i}",
                tenant_id=TENANT,
                user_id="alice",
                session_id=session,
                ts=1_764_000_000.0 + seed * 1000 + i,
                text=f"{words[i % len(words)]} {words[(i * 3 + seed) % len(words)]} {i}",
            ),
            _unit(rng),
        )
        for i in range(n)
    ]


def _episode(events: list[EventPoint], index: int) -> EpisodePoint:
    vectors = np.stack([np.asarray(e.vector) for e in events])
    return EpisodePoint(
        tenant_id=TENANT,
        user_id="alice",
        session_id=events[0].session_id,
        episode_index=index,
        start_ts=events[0].ts,
        end_ts=events[-1].ts,
        event_ids=tuple(e.event_id for e in events),
        vector=vectors.mean(axis=0),
        state="sealed",
    )


def _errors(n: int, seed: int) -> list[ErrorPoint]:
    rng = np.random.default_rng(seed)
    return [
        ErrorPoint(
            tenant_id=TENANT,
            user_id="alice",
            item_id=f"item{i}",
            event_id=f"fb-{seed}-{i}",
            model_version="v1",
            label=1.0,
            prediction=0.2,
            ts=1_764_000_000.0 + seed * 1000 + i,
            vector=_unit(rng),
        )
        for i in range(n)
    ]


async def _index_stage_writes(store, batches: int) -> None:
    """What the index and errors stages write, each write retried until done: events (batches of 40,
    over three upsert chunks), their sealed episodes (context vectors rewritten), error samples, a ttl
    expiry and a capacity trim."""
    for b in range(batches):
        events = _events(40, seed=b, session=f"s{b}")
        episodes = [_episode(events[:25], 0), _episode(events[25:], 1)]
        await until_done(lambda: store.upsert_events(events), "events", first_delay=0.0)
        await until_done(lambda: store.apply_episode_context(episodes, 0.5), "context", first_delay=0.0)
        await until_done(lambda: store.upsert_episodes(episodes), "episodes", first_delay=0.0)
        errors = _errors(12, seed=b)
        await until_done(lambda: store.upsert_errors(errors), "errors", first_delay=0.0)
    await until_done(lambda: store.delete_errors(TENANT, before=1_764_000_000.0 + 1005), "ttl", first_delay=0.0)
    await until_done(lambda: store.trim_errors(TENANT, 20), "trim", first_delay=0.0)


async def _content(store: ServerStore, batches: int) -> dict[str, object]:
    """Everything stored, to compare two stores: points with payloads and own vectors, episodes, errors."""
    ids = [e.event_id for b in range(batches) for e in _events(40, seed=b, session=f"s{b}")]
    events = await store.events_by_ids(TENANT, ids, with_vectors=True)
    episodes = await store.episodes_by_keys(TENANT, [(f"s{b}", i) for b in range(batches) for i in (0, 1)])
    errors = await store.scroll_errors(TENANT)
    return {
        "events": [(e.event_fields(), e.episode_index) for e in events],
        "vectors": np.stack([np.asarray(e.vector) for e in events]),
        "episodes": sorted((e.session_id, e.episode_index, e.event_ids) for e in episodes),
        "errors": sorted(e.event_id for e in errors),
        "counts": [await store.count(c, TENANT) for c in Collection],
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_transient_faults_lose_nothing(seed):
    """Writes cut part way, timeouts (applied or not) and 5xx answers on a third of the writes: retried
    until done, the store ends up exactly as a store written without faults (texts, payloads, vectors within
    1e-6, episode membership, error samples after ttl and capacity)."""
    batches = 4
    async with _store(upsert_batch=16) as clean, _store(upsert_batch=16) as inner:
        await _index_stage_writes(clean, batches)
        faulty = FaultyStore(inner, StoreFaults(rate=0.35, kinds="partial,timeout,unavailable", seed=seed))
        await _index_stage_writes(faulty, batches)
        assert set(faulty.injected) == {"partial", "timeout", "unavailable"}, faulty.injected
        assert sum(faulty.injected.values()) >= 6
        want, got = await _content(clean, batches), await _content(inner, batches)
    assert got["counts"] == want["counts"] and want["counts"][0] == 40 * batches
    assert got["events"] == want["events"]
    assert got["episodes"] == want["episodes"] and got["errors"] == want["errors"]
    np.testing.assert_allclose(got["vectors"], want["vectors"], atol=1e-6)


async def test_a_partial_write_stores_some_points_then_fails():
    async with _store() as inner:
        faulty = FaultyStore(inner, StoreFaults(rate=1.0, kinds="partial", seed=4))
        with pytest.raises(ResponseHandlingException) as raised:
            await faulty.upsert_events(_events(10, seed=0))
        assert isinstance(raised.value.source, httpx.RemoteProtocolError)
        assert 1 <= await inner.count(Collection.EVENTS, TENANT) <= 9


async def test_timeouts_and_5xx_look_like_qdrant_clients():
    async with _store() as inner:
        timeout = FaultyStore(inner, StoreFaults(rate=1.0, kinds="timeout", seed=0))
        with pytest.raises(ResponseHandlingException) as raised:
            await timeout.upsert_events(_events(3, seed=0))
        assert isinstance(raised.value.source, httpx.ReadTimeout)
        unavailable = FaultyStore(inner, StoreFaults(rate=1.0, kinds="unavailable", seed=0))
        with pytest.raises(UnexpectedResponse) as answered:
            await unavailable.delete_errors(TENANT)
        assert answered.value.status_code in (500, 502, 503, 504)


async def test_a_permanent_fault_is_refused_at_once_and_a_crash_is_let_through():
    async with _store() as inner:
        permanent = FaultyStore(inner, StoreFaults(rate=1.0, kinds="permanent"))
        with pytest.raises(Refused) as refused:
            await until_done(lambda: permanent.upsert_events(_events(5, seed=0)), "writing 5 events")
        assert isinstance(refused.value.cause, ValueError)
        assert "writing 5 events failed for good: ValueError: injected permanent store error" in str(refused.value)
        assert permanent.injected["permanent"] == 1  # not retried
        crash = FaultyStore(inner, StoreFaults(rate=1.0, kinds="crash"))
        with pytest.raises(InjectedBug):
            await until_done(lambda: crash.upsert_events(_events(5, seed=0)), "writing 5 events")
        assert crash.injected["crash"] == 1
        assert await inner.count(Collection.EVENTS, TENANT) == 0


async def test_faults_are_drawn_from_the_seed_and_stop_at_the_limit():
    async def kinds(faults: StoreFaults) -> list[str]:
        async with _store() as inner:
            faulty = FaultyStore(inner, faults)
            drawn = []
            for b in range(30):
                try:
                    await faulty.upsert_events(_events(2, seed=b))
                    drawn.append("-")
                except Exception as exc:
                    drawn.append(type(exc).__name__)
            return drawn

    faults = StoreFaults(rate=0.5, kinds="timeout,unavailable,permanent", seed=9)
    first = await kinds(faults)
    assert first == await kinds(faults) and len(set(first)) == 4
    assert first != await kinds(faults.model_copy(update={"seed": 10}))
    limited = await kinds(faults.model_copy(update={"limit": 3}))
    third = [i for i, k in enumerate(first) if k != "-"][2]
    assert limited[: third + 1] == first[: third + 1]  # the same draws up to the limit, then none
    assert set(limited[third + 1 :]) == {"-"}


async def test_the_setting_is_off_by_default_and_read_from_the_environment(monkeypatch, tmp_path):
    settings = Settings()
    assert not settings.store_faults.enabled
    settings.store = StoreConfig(backend="server", url=":memory:", dim=DIM)
    runtime = Runtime(settings)
    assert await runtime.stage_store() is await runtime.store()  # no wrapper when off
    await runtime.close()

    monkeypatch.setenv("MEMSTREAM_STORE_FAULTS__RATE", "0.25")
    monkeypatch.setenv("MEMSTREAM_STORE_FAULTS__KINDS", "partial,crash")
    monkeypatch.setenv("MEMSTREAM_STORE_FAULTS__SEED", "7")
    settings = Settings()
    assert settings.store_faults.kind_list == ["partial", "crash"] and settings.store_faults.seed == 7
    settings.store = StoreConfig(backend="server", url=":memory:", dim=DIM)
    runtime = Runtime(settings)
    stage = await runtime.stage_store()
    assert isinstance(stage, FaultyStore) and stage.inner is await runtime.store()
    assert await runtime.stage_store() is stage  # one wrapper, one sequence of draws
    await runtime.close()

    monkeypatch.setenv("MEMSTREAM_STORE_FAULTS__KINDS", "partial,meteor")
    with pytest.raises(ValidationError, match="meteor"):
        Settings()
