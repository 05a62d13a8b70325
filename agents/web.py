"""HTTP API on every worker (Faust web views): recall, compensate, get, forget, updates, events, health.

Every data route goes through the worker's Guard (agents/auth): the tenant and user a request acts on come
from its credential; what the body names is checked against it, never trusted."""

from __future__ import annotations

import time

import faust
from faust.web import Request, Response
from faust.web.exceptions import ValidationError as BadRequest

from memstream.agents import compensate, ingest, updates
from memstream.agents.api_view import ApiView
from memstream.agents.auth import follow_access_topic
from memstream.agents.http_body import parse_body
from memstream.agents.runtime import Runtime
from memstream.agents.store import recall, recall_events
from memstream.streams.access import Scope
from memstream.streams.api import ForgetRequest, GetRequest, RecallRequest
from memstream.streams.codec import encode
from memstream.streams.contracts import MemoryUpdate, UpdateKind
from memstream.streams.forgetting import ForgetRecord, record_forget


def register(app: faust.App, topics, runtime: Runtime) -> None:
    metrics = runtime.metrics
    guard = runtime.guard

    if guard.mode == "keys":

        @app.task
        async def api_keys() -> None:  # follows the access topic for as long as the worker runs
            await follow_access_topic(guard.keyring, runtime.settings.kafka)

    @app.page("/recall/")
    class RecallView(ApiView):
        async def post(self, request: Request) -> Response:
            caller = await guard.caller(request, limited=True)
            body = await parse_body(request, RecallRequest)
            who = caller.target(Scope.READ, body.tenant_id, body.user_id)
            chosen = runtime.settings.recall.with_request(body.mode, body.budget, body.episode_turns)
            vector = (await runtime.embed([body.query]))[0]
            store = await runtime.store()
            if chosen.mode == "episodes":
                with metrics.store_timer("recall"):
                    episodes = await recall(
                        store,
                        vector,
                        who.tenant_id,
                        user_id=who.user_id,
                        session_id=body.session_id,
                        k_s=body.k_s,
                        k_c=body.k_c,
                        since=body.since,
                        until=body.until,
                    )
                return self.json({"mode": "episodes", "episodes": [e.to_dict() for e in episodes]})
            with metrics.store_timer("recall"):
                events = await recall_events(
                    store,
                    vector,
                    store.lexical.query(body.query),
                    who.tenant_id,
                    user_id=who.user_id,
                    session_id=body.session_id,
                    since=body.since,
                    until=body.until,
                    budget=chosen.budget,
                    episode_turns=chosen.episode_turns,
                    candidates=chosen.candidates,
                )
            return self.json({"mode": "events", "events": [e.to_dict() for e in events]})

    @app.page("/get/")
    class GetView(ApiView):
        async def post(self, request: Request) -> Response:
            caller = await guard.caller(request)
            body = await parse_body(request, GetRequest)
            who = caller.target(Scope.READ, body.tenant_id)
            with metrics.store_timer("get"):
                events = await (await runtime.store()).events_by_ids(who.tenant_id, body.event_ids)
            if who.user_id is not None:  # a user-bound credential sees its user's events only
                events = [e for e in events if e.user_id == who.user_id]
            return self.json({"events": [e.event_fields() for e in events]})

    @app.page("/forget/")
    class ForgetView(ApiView):
        async def post(self, request: Request) -> Response:
            caller = await guard.caller(request)
            body = await parse_body(request, ForgetRequest)
            who = caller.target(Scope.FORGET, body.tenant_id, body.user_id)
            if who.user_id is None:
                raise BadRequest("invalid ForgetRequest: user_id: required (the credential names no user)")
            now = time.time()
            forget = ForgetRecord(tenant_id=who.tenant_id, user_id=who.user_id, forgotten_at=now)
            await record_forget(runtime.settings.kafka, forget)  # durable first: a replay cannot bring it back
            (await runtime.forgotten()).apply_record(forget)  # this worker's stages drop the user's past at once
            with metrics.store_timer("forget"):
                removed = await (await runtime.store()).forget(who.tenant_id, who.user_id)
            compensate.service(runtime).forget_tenant(who.tenant_id)  # the sketch cannot forget one user
            update = MemoryUpdate.make(
                UpdateKind.FORGOTTEN,
                who.tenant_id,
                [who.user_id],
                now,
                salt=f"{now:.6f}",
                user_id=who.user_id,
                payload={"points_removed": removed},
            )
            await topics.memory_updates.send(key=f"{who.tenant_id}/{who.user_id}".encode(), value=encode(update))
            return self.json({"removed": removed})

    compensate.register_views(app, runtime, guard)  # POST /compensate/ (agents/compensate.py)
    updates.register_views(app, runtime, guard)  # GET /updates/ (agents/updates.py)
    ingest.register_views(app, topics, runtime)  # POST /events/ (agents/ingest.py)

    @app.page("/healthz/")
    class HealthView(ApiView):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, "app": runtime.settings.worker.app_id})
