"""The authenticated HTTP API on the real broker (issue 13): one worker (all stages, ``auth.mode=keys``) shared by
the module, keys created in the deployment's real ``access`` topic, events published for several tenants and
users and indexed before any test runs. The policy and the views alone are tested without Kafka in
tests/unit/test_web_auth.py and test_auth_policy.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memstream.streams.access import new_key, publish_key
from memstream.streams.client import Publisher, subscribe
from memstream.streams.contracts import InteractionEvent, MemoryUpdate, UpdateKind
from memstream.streams.control import ensure_control_topic
from memstream.streams.memory_client import AsyncMemoryClient, MemoryApiError, MemoryClient
from tests.integration import harness
from tests.integration.harness import Namespace

pytestmark = pytest.mark.integration

TOPICS = json.loads((Path(__file__).parents[1] / "fixtures" / "three_topics.json").read_text())
TENANTS = ("acme", "globex")  # the isolation tests and the property
FORGET_TENANTS = ("initech", "umbrella")  # only the forget test touches these (it erases some of them)
USERS = ("u1", "u2")
PER_USER = 3
USER_TOPIC = {"u1": "astronomy", "u2": "baking"}
MAX_BODY = 256 * 1024
REVOCATION_BOUND_S = 10.0  # README "Threat model": effective within a poll of the access topic (~1 s); generous here
# Every tenant has the same event ids (point ids are per tenant) and the same texts but for a tenant marker:
# a get or recall that ignored the tenant would return another tenant's copy, visibly.
IDS = tuple(f"{user}-{i}" for user in USERS for i in range(PER_USER))
SCOPE_SETS = (("read",), ("forget",), ("write",), ("read", "forget"), ("read", "write"))


def marker(tenant: str) -> str:
    return f"[{tenant}]"


def events_of(tenant: str, user: str, session: str = "", start: int = 0, n: int = PER_USER) -> list[InteractionEvent]:
    texts = TOPICS[USER_TOPIC[user]]
    session = session or f"{user}-s"
    prefix = "" if session == f"{user}-s" else f"{session}-"
    return [
        InteractionEvent(
            event_id=f"{prefix}{user}-{i}",
            tenant_id=tenant,
            user_id=user,
            session_id=session,
            ts=1_764_000_000 + 30 * i,
            text=f"{marker(tenant)} {texts[i % len(texts)]}",
        )
        for i in range(start, start + n)
    ]


@dataclass
class World:
    ns: Namespace
    url: str
    worker: object
    keys: dict[tuple[str, str | None, tuple[str, ...]], str] = field(default_factory=dict)

    def key(self, tenant: str, scopes: tuple[str, ...] = ("read",), user: str | None = None) -> str:
        return self.keys[(tenant, user, tuple(sorted(scopes)))]

    def alive(self) -> None:
        assert self.worker.poll() is None, f"the worker died:\n{self.ns.logs()}"


async def _publish_keys(ns: Namespace, combos) -> dict:
    """One key per combination, all written to the access topic by one producer (as `memstream keys` would)."""
    await ensure_control_topic(ns.kafka, ns.kafka.topics.access)
    producer = AIOKafkaProducer(**ns.kafka.client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    keys = {}
    try:
        for tenant, user, scopes in combos:
            token, record = new_key(tenant, scopes, user_id=user)
            await producer.send_and_wait(
                ns.kafka.topics.access, key=record.key_id.encode(), value=record.model_dump_json().encode(), partition=0
            )
            keys[(tenant, user, tuple(sorted(scopes)))] = token
    finally:
        await producer.stop()
    return keys


async def _setup(ns: Namespace, worker, timeout: float = 240.0) -> dict:
    combos = [(t, u, s) for t in (*TENANTS, *FORGET_TENANTS) for u in (None, *USERS) for s in SCOPE_SETS]
    keys = await _publish_keys(ns, combos)
    sessions = [events_of(t, u) for t in (*TENANTS, *FORGET_TENANTS) for u in USERS]
    ends = [s[-1].model_copy(update={"event_id": "end", "kind": "session_end", "text": ""}) for s in sessions]
    want = {(e.tenant_id, e.event_id) for s in sessions for e in s} | {(e.tenant_id, e.session_id) for e in ends}
    seen: set[tuple[str, str]] = set()
    kinds = [UpdateKind.EVENT_INDEXED, UpdateKind.EPISODE_SEALED]
    async with subscribe(kinds=kinds, from_beginning=True, kafka=ns.kafka) as updates:
        async with Publisher(ns.kafka) as pub:  # each session ends: its episode is sealed (recall mode episodes)
            await pub.publish_many([e for s in sessions for e in s] + ends)
        deadline = time.monotonic() + timeout
        while not want <= seen:
            assert worker.poll() is None, f"the worker died:\n{ns.logs()}"
            assert time.monotonic() < deadline, f"indexed/sealed {len(seen)}/{len(want)}:\n{ns.logs()}"
            for u in await updates.poll(timeout=0.5):
                seen.add((u.tenant_id, u.ids[0] if u.kind == UpdateKind.EVENT_INDEXED else u.session_id))
    return keys


def _wait_for_key(url: str, token: str, timeout: float = 60.0) -> None:
    """Until the worker has read `token` from the access topic (503 while loading, 401 before the key arrives)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        while True:
            with contextlib.suppress(httpx.TransportError):
                status = http.post("/get/", json={"event_ids": ["x"]}).status_code
                if status == 200:
                    return
                assert status in (401, 503), status
            assert time.monotonic() < deadline, f"the worker never accepted the key (last: {status})"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def world(kafka_bootstrap, tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    ns = Namespace(kafka_bootstrap, root)
    harness.CREATED.remove(ns)  # shared by the module: this fixture stops it and deletes its topics
    asyncio.run(ns.create_topics())  # before the worker starts, as a deployment would
    worker = ns.start_worker(
        MEMSTREAM_AUTH__MODE="keys",
        MEMSTREAM_STORE__PATH=str(root / "store"),
        MEMSTREAM_HTTP__MAX_BODY_BYTES=str(MAX_BODY),
        MEMSTREAM_HTTP__RATE_LIMIT="10000/second",  # the 429 is tested in tests/unit/test_web_auth.py
    )
    try:
        keys = asyncio.run(_setup(ns, worker))
        url = f"http://127.0.0.1:{ns.ports['w1']}"
        _wait_for_key(url, keys[(FORGET_TENANTS[-1], USERS[-1], SCOPE_SETS[-1])])  # the last key written
        yield World(ns, url, worker, keys)
    finally:
        ns.stop_workers()
        print(ns.logs()[-3000:])
        asyncio.run(ns.delete_topics())


def _client(world: World, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=world.url, headers=headers, timeout=30)


def _compensate_body(tenant: str | None) -> dict:
    body = {"user_id": "u1", "model_version": "m1", "y_base": 0.5, "features": {"text": "a telescope"}}
    return body | ({"tenant_id": tenant} if tenant else {})


# (method, path, body naming tenant `t`): every data route of the API
ROUTES = {
    "recall": ("POST", "/recall/", lambda t: {"query": "telescope galaxies", "tenant_id": t}),
    "get": ("POST", "/get/", lambda t: {"tenant_id": t, "event_ids": list(IDS)}),
    "forget": ("POST", "/forget/", lambda t: {"tenant_id": t, "user_id": "u1"}),
    "compensate": ("POST", "/compensate/", _compensate_body),
    "updates": ("GET", "/updates/", lambda t: {"tenant_id": t, "from": "beginning"}),
}


def _call(http: httpx.Client, route: str, tenant: str) -> httpx.Response:
    method, path, body = ROUTES[route]
    if method == "GET":
        return http.get(path, params=body(tenant))  # refused before the stream starts, so it returns
    return http.post(path, json=body(tenant))


def _get(http: httpx.Client, ids=IDS, tenant: str | None = None) -> list[dict]:
    response = http.post("/get/", json={"event_ids": list(ids)} | ({"tenant_id": tenant} if tenant else {}))
    assert response.status_code == 200, response.text
    return response.json()["events"]


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_refuses_a_missing_or_unknown_credential(world, route):
    for token in (None, "msk_0123456789abcdef_" + "A" * 43):
        with _client(world, token) as http:
            response = _call(http, route, "acme")
        assert response.status_code == 401, (route, token, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert marker("acme") not in response.text


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_refuses_another_tenants_credential(world, route):
    with _client(world, world.key("globex", ("read", "forget"))) as http:
        response = _call(http, route, "acme")
    assert response.status_code == 403, (route, response.text)
    assert marker("acme") not in response.text and "u1-0" not in response.text
    with _client(world, world.key("acme")) as http:  # and nothing of acme's was touched (forget included)
        assert {e["event_id"] for e in _get(http)} == set(IDS)


def test_a_key_sees_only_its_own_tenant_without_naming_one(world):
    with _client(world, world.key("globex")) as http:
        got = _get(http)  # the same ids exist in acme, umbrella and initech
        assert {e["event_id"] for e in got} == set(IDS)
        assert all(e["tenant_id"] == "globex" and e["text"].startswith(marker("globex")) for e in got), got
        for query in ("telescope galaxies", "bread dough and ovens"):
            response = http.post("/recall/", json={"query": query, "budget": 20})
            assert response.status_code == 200, response.text
            recalled = response.json()["events"]
            assert recalled, query
            assert all(e["tenant_id"] == "globex" and e["text"].startswith(marker("globex")) for e in recalled)
            response = http.post("/recall/", json={"query": query, "mode": "episodes", "k_s": 5, "k_c": 1})
            episodes = response.json()["episodes"]
            assert episodes and all(ev["tenant_id"] == "globex" for ep in episodes for ev in ep["events"]), episodes


def test_forget_needs_the_forget_scope_and_erases_only_that_tenants_user(world):
    tenant, other = FORGET_TENANTS
    with _client(world, world.key(tenant, ("read",))) as http:
        refused = http.post("/forget/", json={"user_id": "u1"})
        assert refused.status_code == 403, refused.text
        assert len(_get(http)) == len(IDS), "a refused forget erased something"
    with _client(world, world.key(tenant, ("forget",), user="u2")) as http:  # bound to u2: not u1's
        assert http.post("/forget/", json={"user_id": "u1"}).status_code == 403
    with _client(world, world.key(tenant, ("forget",))) as http:
        response = http.post("/forget/", json={"user_id": "u1"})
        assert response.status_code == 200, response.text
        assert response.json()["removed"] >= PER_USER
    with _client(world, world.key(tenant, ("read",))) as http:
        left = _get(http)
        assert {e["event_id"] for e in left} == {i for i in IDS if i.startswith("u2-")}, left
        recalled = http.post("/recall/", json={"query": "telescope galaxies", "budget": 20}).json()["events"]
        assert recalled and all(e["user_id"] == "u2" for e in recalled), recalled
    for untouched in (other, *TENANTS):  # the same user id in other tenants keeps its memory
        with _client(world, world.key(untouched, ("read",))) as http:
            assert {e["event_id"] for e in _get(http)} == set(IDS), untouched
    world.alive()


async def test_a_revoked_key_stops_working_within_the_bound(world):
    token, record = new_key("globex", ["read"])
    await publish_key(world.ns.kafka, record)
    await asyncio.to_thread(_wait_for_key, world.url, token)
    ended: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def stream() -> None:  # an update stream open with the key: it must end too
        async with AsyncMemoryClient(world.url, key=token) as client:
            try:
                async for _ in client.updates(from_beginning=True):
                    pass
            except MemoryApiError as exc:
                if exc.status == 401:
                    ended.set_result(time.monotonic())
                else:
                    ended.set_exception(exc)

    task = asyncio.create_task(stream())
    async with AsyncMemoryClient(world.url, key=token) as client:
        assert len(await client.get(event_ids=IDS)) == len(IDS)
        await asyncio.sleep(1.5)  # the stream is open and reading
        published = time.monotonic()
        await publish_key(world.ns.kafka, record.revoked())
        acked = time.monotonic()
        while True:
            try:
                await client.get(event_ids=IDS)
            except MemoryApiError as exc:
                assert exc.status == 401, exc
                break
            assert time.monotonic() - acked < REVOCATION_BOUND_S, "the revoked key still works"
            await asyncio.sleep(0.05)
        refused = time.monotonic()
        with pytest.raises(MemoryApiError) as recall_refused:
            await client.recall("telescope galaxies")
        assert recall_refused.value.status == 401
    try:
        stream_end = await asyncio.wait_for(ended, REVOCATION_BOUND_S)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    print(
        f"\nrevocation: requests refused {refused - acked:.3f} s after the broker's ack "
        f"({refused - published:.3f} s after publishing began); update stream ended {stream_end - acked:.3f} s "
        "after the ack"
    )
    assert refused - acked < REVOCATION_BOUND_S and stream_end - acked < REVOCATION_BOUND_S


async def test_an_update_stream_carries_only_its_credentials_tenant_and_user(world):
    """Three subscribers (acme, globex, acme's u1 only) read from the beginning while both tenants publish."""
    live = {
        "acme": events_of("acme", "u1", "live", 10, 3) + events_of("acme", "u2", "live2", 10, 3),
        "globex": events_of("globex", "u1", "live", 10, 3),
    }
    subscribers = {
        "acme": (world.key("acme"), {e.event_id for e in live["acme"]}),
        "globex": (world.key("globex"), {e.event_id for e in live["globex"]}),
        "acme/u1": (world.key("acme", user="u1"), {e.event_id for e in live["acme"] if e.user_id == "u1"}),
    }
    received: dict[str, list[MemoryUpdate]] = {name: [] for name in subscribers}

    async def follow(name: str) -> None:
        token, wanted = subscribers[name]
        async with AsyncMemoryClient(world.url, key=token) as client:
            async for _, update in client.updates(from_beginning=True):
                received[name].append(update)
                live_indexed = {u.ids[0] for u in received[name] if u.kind == UpdateKind.EVENT_INDEXED}
                if wanted <= live_indexed:
                    return

    tasks = [asyncio.create_task(follow(name)) for name in subscribers]
    await asyncio.sleep(1.0)
    interleaved = [e for pair in zip_longest(live["acme"], live["globex"]) for e in pair if e is not None]
    async with Publisher(world.ns.kafka) as pub:  # both tenants publish at once
        await pub.publish_many(interleaved)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), 180)
    finally:
        for task in tasks:
            task.cancel()
    world.alive()
    for name, updates in received.items():
        tenant, _, user = name.partition("/")
        assert updates, name
        assert all(u.tenant_id == tenant for u in updates), (name, {u.tenant_id for u in updates})
        if user:
            assert all(u.user_id == user for u in updates), (name, {u.user_id for u in updates})
    # from the beginning, each saw its tenant's earlier updates too
    assert {u.ids[0] for u in received["acme"] if u.kind == UpdateKind.EVENT_INDEXED} >= set(IDS)
    assert {u.ids[0] for u in received["acme/u1"] if u.kind == UpdateKind.EVENT_INDEXED} >= {
        i for i in IDS if i.startswith("u1-")
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tenant=st.sampled_from(TENANTS),
    user=st.sampled_from((None, *USERS)),
    scopes=st.sampled_from(SCOPE_SETS),
    route=st.sampled_from(("get", "recall")),
    named_tenant=st.sampled_from((None, *TENANTS)),
    named_user=st.sampled_from((None, *USERS)),
    ids=st.lists(st.sampled_from(IDS), min_size=1, max_size=len(IDS), unique=True),
    query=st.sampled_from(("telescope galaxies", "bread dough and ovens", "planets")),
)
def test_no_combination_of_key_and_request_leaks(
    world, tenant, user, scopes, route, named_tenant, named_user, ids, query
):
    """A key only ever sees its own tenant's events (its user's, if bound to one); anything else is a 403."""
    named_user = named_user if route == "recall" else None  # /get/ names no user
    refused = (
        "read" not in scopes
        or named_tenant not in (None, tenant)
        or (user is not None and named_user not in (None, user))
    )
    with MemoryClient(world.url, key=world.key(tenant, scopes, user)) as client:
        try:
            if route == "get":
                got = client.get(tenant_id=named_tenant, event_ids=ids)
            else:
                got = client.recall(query, tenant_id=named_tenant, user_id=named_user, budget=20)
        except MemoryApiError as exc:
            assert refused and exc.status == 403, exc
            return
    assert not refused, got
    who = user or named_user
    for event in got:
        assert event["tenant_id"] == tenant and event["text"].startswith(marker(tenant)), event
        assert who is None or event["user_id"] == who, event
    if route == "get":
        assert sorted(e["event_id"] for e in got) == sorted(i for i in ids if who is None or i.startswith(f"{who}-"))
    else:
        assert got  # its own tenant (and user) has events for every query


def test_oversized_and_malformed_bodies_are_refused_and_the_worker_stays_up(world):
    deep = b"[" * 100_000 + b"]" * 100_000  # under the body limit, far over orjson's nesting limit
    bad = {
        "oversized": (413, json.dumps({"query": "x" * MAX_BODY}).encode()),
        "oversized, chunked": (413, [b'{"query": "', *[b"x" * 8192] * (MAX_BODY // 8192 + 2), b'"}']),
        "not JSON": (400, b'{"query": "telescope'),
        "deeply nested array": (400, deep),
        "deeply nested in a field": (400, b'{"query": ' + deep + b"}"),
    }
    with _client(world, world.key("acme", ("read", "forget"))) as http:
        for path in ("/recall/", "/get/", "/forget/", "/compensate/"):
            for name, (status, body) in bad.items():
                content = body if isinstance(body, bytes) else iter(body)  # an iterator: sent chunked
                response = http.post(path, content=content, headers={"Content-Type": "application/json"})
                assert response.status_code == status, (path, name, response.status_code, response.text[:300])
        world.alive()
        assert http.get("/healthz/").status_code == 200
        response = http.post("/recall/", json={"query": "telescope galaxies", "budget": 5})
        assert response.status_code == 200, response.text
        recalled = response.json()["events"]
        assert recalled and all(e["tenant_id"] == "acme" for e in recalled)
