"""Every data route of the worker's HTTP API needs a credential; the tenant and user come from it (no Kafka:
keys are put into the worker's keyring directly; the access topic is tested in tests/integration)."""

from __future__ import annotations

import time

import faust
import jwt
import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from memstream.agents.app import create_app
from memstream.agents.settings import Settings
from memstream.agents.store import EdgeStore, EventPoint, StoreConfig
from memstream.streams.access import Scope
from memstream.streams.contracts import InteractionEvent
from tests.unit.web_keys import add_key, bearer, guard_of

BODIES = {
    "/recall/": {"query": "hello"},
    "/get/": {"event_ids": ["a-1"]},
    "/forget/": {"user_id": "u1"},
    "/compensate/": {"user_id": "u1", "model_version": "v1", "y_base": 0.5, "features": {"text": "x"}},
    "/events/": {"events": [{"event_id": "e9", "user_id": "u1", "session_id": "s", "ts": 1.0, "text": "hi"}]},
}


def _settings(tmp_path, **groups) -> Settings:
    worker = {"state_dir": tmp_path / "state", "table_store": "memory://", "app_id": "web-auth"}
    return Settings(worker=worker, store=StoreConfig(path=tmp_path / "edge", dim=4), **groups)


@pytest.fixture
async def stored(tmp_path) -> Settings:
    """A store holding one event of user u1 and one of u2 in tenant a, and one in tenant b."""
    settings = _settings(tmp_path)
    events = [
        InteractionEvent(event_id=e, tenant_id=t, user_id=u, session_id="s", ts=1.0, kind="message", text="hi")
        for e, t, u in [("a-1", "a", "u1"), ("a-2", "a", "u2"), ("b-1", "b", "u1")]
    ]
    async with EdgeStore(settings.store) as edge:
        await edge.upsert_events([EventPoint.from_event(e, np.ones(4, np.float32), episode_index=0) for e in events])
    return settings


async def _call(app: faust.App, method: str, path: str, body=None, headers=None) -> tuple[int, dict, dict]:
    async with TestClient(TestServer(app.web.web_app)) as client:
        data = None if body is None else orjson.dumps(body)
        response = await client.request(method, path, data=data, headers=headers or {})
        text = await response.text()
        return response.status, (orjson.loads(text) if text.startswith("{") else {"raw": text}), response.headers


@pytest.mark.parametrize(("method", "path"), [("POST", p) for p in BODIES] + [("GET", "/updates/")])
@pytest.mark.parametrize("header", [None, "Bearer", "Bearer msk_0123456789abcdef_" + "x" * 43, "Basic dXNlcjpw"])
async def test_every_data_route_refuses_a_request_without_a_valid_credential(tmp_path, method, path, header):
    app = create_app(_settings(tmp_path), stages=("web",))
    add_key(app, "a")  # the keyring is loaded: the refusal is about this request's credential
    status, body, headers = await _call(
        app, method, path, {"tenant_id": "a", **BODIES.get(path, {})}, {"Authorization": header} if header else {}
    )
    assert status == 401 and "Bearer" in headers["WWW-Authenticate"], body


async def test_the_worker_answers_503_until_it_has_read_its_keys(tmp_path):
    app = create_app(_settings(tmp_path), stages=("web",))
    token, _ = add_key(app, "a")
    guard_of(app).keyring.ready = False
    status, body, headers = await _call(app, "POST", "/get/", BODIES["/get/"], bearer(token))
    assert status == 503 and headers["Retry-After"] == "1", body


@pytest.mark.parametrize("path", list(BODIES))
async def test_another_tenant_named_in_the_body_is_a_403(stored, path):
    app = create_app(stored, stages=("web",))
    token, _ = add_key(app, "a")
    asked = {"events": [{**BODIES[path]["events"][0], "tenant_id": "b"}]} if path == "/events/" else BODIES[path]
    asked = asked if path == "/events/" else {**asked, "tenant_id": "b"}
    status, body, _ = await _call(app, "POST", path, asked, bearer(token))
    assert status == 403 and "tenant" in body["error"], body
    if path == "/get/":
        status, body, _ = await _call(app, "POST", path, {"event_ids": ["b-1"]}, bearer(token))
        assert status == 200 and body["events"] == []  # b's event is not a's, whoever asks


async def test_the_tenant_comes_from_the_key_and_a_user_key_sees_its_user_only(stored):
    app = create_app(stored, stages=("web",))
    tenant_key, _ = add_key(app, "a")
    user_key, _ = add_key(app, "a", user="u1")
    ids = {"event_ids": ["a-1", "a-2", "b-1"]}
    _, body, _ = await _call(app, "POST", "/get/", ids, bearer(tenant_key))
    assert sorted(e["event_id"] for e in body["events"]) == ["a-1", "a-2"]
    _, body, _ = await _call(app, "POST", "/get/", ids, bearer(user_key))
    assert [e["event_id"] for e in body["events"]] == ["a-1"]
    status, body, _ = await _call(app, "POST", "/forget/", {"user_id": "u2"}, bearer(user_key))
    assert status == 403 and "user" in body["error"]


async def test_scopes_decide_what_a_key_may_do(stored):
    app = create_app(stored, stages=("web",))
    reader, _ = add_key(app, "a", [Scope.READ])
    forgetter, _ = add_key(app, "a", [Scope.FORGET])
    admin, _ = add_key(app, "ops", [Scope.ADMIN])
    status, body, _ = await _call(app, "POST", "/forget/", {"user_id": "u2"}, bearer(reader))
    assert status == 403 and "'forget' scope" in body["error"]
    status, body, _ = await _call(app, "POST", "/get/", {"event_ids": ["a-1"]}, bearer(forgetter))
    assert status == 403 and "'read' scope" in body["error"]
    status, body, _ = await _call(app, "POST", "/get/", {"tenant_id": "b", "event_ids": ["b-1"]}, bearer(admin))
    assert status == 200 and [e["event_id"] for e in body["events"]] == ["b-1"]  # admin: cross-tenant


async def test_a_revoked_key_stops_working(stored):
    app = create_app(stored, stages=("web",))
    token, record = add_key(app, "a")
    assert (await _call(app, "POST", "/get/", BODIES["/get/"], bearer(token)))[0] == 200
    guard_of(app).keyring.apply(record.key_id, record.revoked())
    assert (await _call(app, "POST", "/get/", BODIES["/get/"], bearer(token)))[0] == 401


async def test_recall_and_compensate_are_rate_limited_per_credential(tmp_path):
    app = create_app(_settings(tmp_path, http={"rate_limit": "2/minute"}), stages=("web",))
    first, _ = add_key(app, "a")
    second, _ = add_key(app, "a")
    invalid = {"query": ""}  # refused after the limit is applied: no embedder needed
    statuses = [(await _call(app, "POST", "/recall/", invalid, bearer(first)))[0] for _ in range(3)]
    assert statuses == [400, 400, 429]
    status, _, headers = await _call(app, "POST", "/compensate/", {}, bearer(first))
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60
    assert (await _call(app, "POST", "/recall/", invalid, bearer(second)))[0] == 400  # its own budget


async def test_auth_mode_none_takes_the_tenant_from_the_body_and_requires_it(stored):
    settings = stored.model_copy(update={"auth": stored.auth.model_copy(update={"mode": "none"})})
    app = create_app(settings, stages=("web",))
    status, body, _ = await _call(app, "POST", "/get/", {"event_ids": ["b-1"]})
    assert status == 400 and "tenant_id is required" in body["error"]
    status, body, _ = await _call(app, "POST", "/get/", {"tenant_id": "b", "event_ids": ["b-1"]})
    assert status == 200 and len(body["events"]) == 1


@pytest.mark.parametrize("path", ["/router/", "/table/", "/stats/", "/graph/"])
async def test_fausts_debug_routes_are_not_served(tmp_path, path):
    app = create_app(_settings(tmp_path), stages=("web",))
    assert (await _call(app, "GET", path))[0] == 404


@pytest.fixture(scope="module")
def signing_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


async def test_a_jwt_signed_by_the_configured_key_is_a_credential(stored, tmp_path, signing_key):
    (tmp_path / "jwt.pem").write_bytes(_pem(signing_key))
    auth = {"jwt_public_key_file": tmp_path / "jwt.pem", "jwt_audience": "memstream"}
    app = create_app(stored.model_copy(update={"auth": stored.auth.model_validate(auth)}), stages=("web",))
    guard_of(app).keyring.ready = True
    now = int(time.time())
    claims = {"sub": "svc", "tenant_id": "a", "user_id": "u2", "scope": "read", "aud": "memstream", "exp": now + 60}

    def token(key=signing_key, **changes) -> dict[str, str]:
        return bearer(jwt.encode({**claims, **changes}, key, algorithm="RS256"))

    status, body, _ = await _call(app, "POST", "/get/", {"event_ids": ["a-1", "a-2"]}, token())
    assert status == 200 and [e["event_id"] for e in body["events"]] == ["a-2"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for refused in (token(other), token(exp=now - 10), token(aud="other"), token(tenant_id="no way!"), token(scope="")):
        status, body, _ = await _call(app, "POST", "/get/", {"event_ids": ["a-1"]}, refused)
        assert status == 401, body
    status, body, _ = await _call(app, "POST", "/get/", {"tenant_id": "b", "event_ids": ["b-1"]}, token())
    assert status == 403


async def test_the_operators_admin_key_acts_on_the_tenant_it_names(stored):
    auth = stored.auth.model_validate({"admin_key": "s3cret-operator-key-0123456789abcdef"})
    app = create_app(stored.model_copy(update={"auth": auth}), stages=("web",))
    add_key(app, "a")
    operator = bearer("s3cret-operator-key-0123456789abcdef")
    status, body, _ = await _call(app, "POST", "/get/", {"event_ids": ["b-1"]}, operator)
    assert status == 400 and "tenant_id is required" in body["error"]
    status, body, _ = await _call(app, "POST", "/get/", {"tenant_id": "b", "event_ids": ["b-1"]}, operator)
    assert status == 200 and [e["event_id"] for e in body["events"]] == ["b-1"]
    assert (await _call(app, "POST", "/get/", {"tenant_id": "b", "event_ids": ["b-1"]}, bearer("s3cret")))[0] == 401


async def test_publishing_needs_the_write_scope_and_valid_events_for_the_keys_user(tmp_path):
    app = create_app(_settings(tmp_path), stages=("web",))
    reader, _ = add_key(app, "a", [Scope.READ])
    writer, _ = add_key(app, "a", [Scope.WRITE], user="u1")
    event = BODIES["/events/"]["events"][0]
    status, body, _ = await _call(app, "POST", "/events/", BODIES["/events/"], bearer(reader))
    assert status == 403 and "'write' scope" in body["error"]
    status, body, _ = await _call(app, "POST", "/events/", {"events": [{**event, "user_id": "u2"}]}, bearer(writer))
    assert status == 403 and "user" in body["error"]
    status, body, _ = await _call(app, "POST", "/events/", {"events": [event, {**event, "ts": "x"}]}, bearer(writer))
    assert status == 400 and body["error"].startswith("event 1: ")  # nothing sent: the batch is checked first


@pytest.mark.parametrize(
    ("host", "warned"), [("0.0.0.0", True), ("10.1.2.3", True), ("127.0.0.1", False), ("::1", False)]
)
def test_auth_off_beyond_loopback_is_logged_as_a_warning(tmp_path, caplog, host, warned):
    from memstream.agents.auth import Guard

    settings = _settings(tmp_path).model_copy(deep=True)
    settings.worker.web_host, settings.auth.mode = host, "none"
    with caplog.at_level("WARNING"):
        Guard(settings)
    assert ("MEMSTREAM_AUTH__MODE=none" in caplog.text) is warned
