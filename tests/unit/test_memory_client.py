"""MemoryClient / AsyncMemoryClient against a recorded HTTP transport: what is sent, what comes back, errors."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from memstream import AsyncMemoryClient, InvalidRecord, MemoryApiError, MemoryClient

EVENT = {"event_id": "e1", "tenant_id": "acme", "session_id": "s1", "text": "rail pass", "score": 0.9}


class Worker:
    """A fake worker's HTTP API that records every request and answers like the real views."""

    def __init__(self, status: int = 200, answer: Any = None) -> None:
        self.requests: list[httpx.Request] = []
        self.status, self.answer = status, answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status, text="invalid RecallRequest: tenant_id: nope")
        if self.answer is not None:
            return httpx.Response(200, json=self.answer)
        body = orjson.loads(request.content) if request.content else {}
        answers = {
            "/recall/": {"mode": "events", "events": [EVENT]}
            if body.get("mode") != "episodes"
            else {"mode": "episodes", "episodes": [{"episode_index": 0, "events": [EVENT]}]},
            "/get/": {"events": [EVENT]},
            "/forget/": {"removed": 7},
            "/compensate/": {"results": [{"y": 0.3}, {"y": 0.4}]} if "queries" in body else {"y": 0.3},
            "/healthz/": {"ok": True},
        }
        return httpx.Response(200, json=answers[request.url.path])

    def body(self, index: int = -1) -> dict[str, Any]:
        return dict(orjson.loads(self.requests[index].content))


def _client(worker: Worker) -> MemoryClient:
    return MemoryClient("http://worker:6066/", transport=httpx.MockTransport(worker))


QUERY = {"tenant_id": "acme", "user_id": "alice", "model_version": "v1", "y_base": 0.2, "features": {"text": "x"}}


def test_recall_sends_only_what_was_asked_and_returns_the_events() -> None:
    worker = Worker()
    with _client(worker) as memory:
        events = memory.recall("where is the rail pass?", tenant_id="acme", user_id="alice", budget=5)
    assert events == [EVENT]
    assert str(worker.requests[0].url) == "http://worker:6066/recall/"
    # unset options stay unset, so the worker's own recall settings apply
    assert worker.body() == {
        "query": "where is the rail pass?",
        "tenant_id": "acme",
        "user_id": "alice",
        "budget": 5,
        "k_s": 5,
        "k_c": 1,
    }


def test_recall_in_episodes_mode_returns_episodes() -> None:
    worker = Worker()
    with _client(worker) as memory:
        episodes = memory.recall("q", tenant_id="acme", mode="episodes")
    assert episodes[0]["events"] == [EVENT] and worker.body()["mode"] == "episodes"


def test_bad_input_is_refused_before_anything_is_sent() -> None:
    worker = Worker()
    with _client(worker) as memory:
        with pytest.raises(InvalidRecord, match="tenant_id"):
            memory.recall("q", tenant_id="not a tenant!")
        with pytest.raises(InvalidRecord, match="budget"):
            memory.recall("q", tenant_id="acme", budget=0)
        with pytest.raises(InvalidRecord, match="unexpected"):
            memory.recall("q", tenant_id="acme", unexpected=1)
        with pytest.raises(InvalidRecord, match="y_base"):
            memory.compensate(**{**QUERY, "y_base": 2.0})
    assert worker.requests == []


def test_an_error_answer_raises_with_the_workers_status_and_reason() -> None:
    with _client(Worker(status=400)) as memory, pytest.raises(MemoryApiError) as caught:
        memory.recall("q", tenant_id="acme")
    assert caught.value.status == 400
    assert "tenant_id: nope" in caught.value.detail
    assert caught.value.url == "http://worker:6066/recall/"


def test_get_forget_compensate_health() -> None:
    worker = Worker()
    with _client(worker) as memory:
        assert memory.get(tenant_id="acme", event_ids=["e1"]) == [EVENT]
        assert worker.body() == {"tenant_id": "acme", "event_ids": ["e1"]}
        assert memory.forget(tenant_id="acme", user_id="alice") == 7
        assert memory.compensate(**QUERY) == {"y": 0.3}
        assert memory.compensate_many([QUERY, QUERY]) == [{"y": 0.3}, {"y": 0.4}]
        assert len(worker.body()["queries"]) == 2
        assert memory.health() == {"ok": True}
    assert [r.url.path for r in worker.requests] == ["/get/", "/forget/", "/compensate/", "/compensate/", "/healthz/"]


def test_an_unreachable_worker_is_a_transport_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with MemoryClient("http://worker:1", transport=httpx.MockTransport(refuse)) as memory:
        with pytest.raises(httpx.ConnectError):
            memory.forget(tenant_id="acme", user_id="alice")


async def test_the_async_client_sends_the_same_requests() -> None:
    sync_worker, async_worker = Worker(), Worker()
    with _client(sync_worker) as memory:
        memory.recall("q", tenant_id="acme", session_id="s1")
        memory.forget(tenant_id="acme", user_id="alice")
    async with AsyncMemoryClient("http://worker:6066", transport=httpx.MockTransport(async_worker)) as memory:
        assert await memory.recall("q", tenant_id="acme", session_id="s1") == [EVENT]
        assert await memory.forget(tenant_id="acme", user_id="alice") == 7
        with pytest.raises(InvalidRecord):
            await memory.get(tenant_id="acme", event_ids=[])
    assert [(r.url, r.content) for r in async_worker.requests] == [(r.url, r.content) for r in sync_worker.requests]


def test_the_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from memstream.streams.settings import client_settings

    monkeypatch.setenv("MEMSTREAM_API__URL", "http://memory.internal:7000/")
    client_settings.cache_clear()
    try:
        with MemoryClient() as memory:
            assert memory.url == "http://memory.internal:7000"
    finally:
        client_settings.cache_clear()
