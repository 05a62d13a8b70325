"""The worker's web views refuse bad request bodies with a 400 that says why (one parser, agents/http_body.py)."""

from __future__ import annotations

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstream.agents.app import create_app
from memstream.agents.settings import Settings


@pytest.fixture
def app(tmp_path) -> faust.App:
    settings = Settings(worker={"state_dir": tmp_path / "state", "table_store": "memory://", "app_id": "web-test"})
    return create_app(settings, stages=("web",))


async def _post(app: faust.App, path: str, body: str) -> tuple[int, str]:
    async with TestClient(TestServer(app.web.web_app)) as client:
        response = await client.post(path, data=body, headers={"Content-Type": "application/json"})
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
        ("/compensate/", '{"tenant_id": "t"}', "invalid CompensateRequest: user_id: Field required"),
        ("/compensate/", '{"queries": []}', "invalid CompensateBatchRequest: queries:"),
    ],
)
async def test_an_invalid_body_is_a_400_naming_the_model_and_the_field(
    app: faust.App, path: str, body: str, reason: str
):
    status, text = await _post(app, path, body)
    assert status == 400 and reason in text, text
