"""The worker's web views refuse bad request bodies with a 400 that says why (one parser, agents/http_body.py),
too large ones with a 413, and never answer a 500 to malformed input. Requests carry a key of tenant `t`."""

from __future__ import annotations

import faust
import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstream.agents.app import create_app
from memstream.agents.settings import Settings
from memstream.streams.contracts import InteractionEvent
from tests.unit.web_keys import add_key, bearer


@pytest.fixture
def app(tmp_path) -> faust.App:
    settings = Settings(worker={"state_dir": tmp_path / "state", "table_store": "memory://", "app_id": "web-test"})
    return create_app(settings, stages=("web",))


async def _post(app: faust.App, path: str, body: str | bytes) -> tuple[int, str]:
    token, _ = add_key(app, "t")
    async with TestClient(TestServer(app.web.web_app)) as client:
        response = await client.post(path, data=body, headers=bearer(token))
        return response.status, await response.text()


@pytest.mark.parametrize("path", ["/recall/", "/get/", "/forget/", "/compensate/"])
async def test_a_body_that_is_not_json_is_a_400(app: faust.App, path: str):
    status, text = await _post(app, path, "{not json")
    assert status == 400 and "request body is not JSON" in text


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/recall/", '{"tenant_id": "t"}', "invalid RecallRequest: query: Field required"),
        ("/get/", '{"tenant_id": "t", "event_ids": []}', "invalid GetRequest: event_ids:"),
        ("/forget/", '{"tenant_id": "bad tenant!", "user_id": "u"}', "invalid ForgetRequest: tenant_id:"),
        ("/forget/", '{"tenant_id": "t"}', "invalid ForgetRequest: user_id: required"),
        ("/compensate/", '{"tenant_id": "t"}', "invalid CompensateRequest: user_id: Field required"),
        ("/compensate/", '{"queries": []}', "invalid CompensateBatchRequest: queries:"),
    ],
)
async def test_an_invalid_body_is_a_400_naming_the_model_and_the_field(
    app: faust.App, path: str, body: str, reason: str
):
    status, text = await _post(app, path, body)
    assert status == 400 and reason in text, text


async def test_get_answers_each_event_with_the_contracts_fields(tmp_path):
    from memstream.agents.store import EdgeStore, EventPoint, StoreConfig

    store = StoreConfig(path=tmp_path / "edge", dim=4)
    event = InteractionEvent(
        event_id="e1", tenant_id="t", user_id="u", session_id="s", ts=2.0, kind="note", text="hi", attributes={"n": 1}
    )
    async with EdgeStore(store) as edge:
        await edge.upsert_events([EventPoint.from_event(event, np.ones(4, np.float32), episode_index=0)])
    settings = Settings(
        worker={"state_dir": tmp_path / "state", "table_store": "memory://", "app_id": "web-get-test"}, store=store
    )
    app = create_app(settings, stages=("web",))
    status, text = await _post(app, "/get/", '{"tenant_id": "t", "event_ids": ["e1", "e2"]}')
    assert status == 200, text
    (got,) = orjson.loads(text)["events"]
    assert got == event.model_dump(mode="json", exclude={"schema_version"})


@pytest.mark.parametrize("path", ["/recall/", "/get/", "/forget/", "/compensate/"])
async def test_a_deeply_nested_body_is_a_400_not_a_500(app: faust.App, path: str):
    status, text = await _post(app, path, "[" * 100_000 + "]" * 100_000)
    assert status == 400 and "request body is not JSON" in text, text


@pytest.mark.parametrize("path", ["/recall/", "/get/", "/forget/", "/compensate/"])
async def test_a_body_over_the_limit_is_a_413(tmp_path, path: str):
    settings = Settings(
        worker={"state_dir": tmp_path / "state", "table_store": "memory://", "app_id": "web-413"},
        http={"max_body_bytes": 4096},
    )
    app = create_app(settings, stages=("web",))
    body = orjson.dumps({"tenant_id": "t", "query": "x" * 5000})
    status, text = await _post(app, path, body)
    assert status == 413 and "over the limit of 4096" in text, text

    async def chunks():  # no Content-Length: aiohttp's own limit stops the read
        for _ in range(5):
            yield b" " * 1024

    token, _ = add_key(app, "t")
    async with TestClient(TestServer(app.web.web_app)) as client:
        response = await client.post(path, data=chunks(), headers=bearer(token))
        assert response.status == 413, await response.text()
        health = await client.get("/healthz/")
        assert health.status == 200  # the worker stays up
