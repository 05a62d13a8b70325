"""HTTP API on every worker (Faust web views): recall, compensate, get, forget, health."""

from __future__ import annotations

import time

import faust
from faust.web import Request, Response, View

from memstream.agents import compensate
from memstream.agents.http_body import parse_body
from memstream.agents.runtime import Runtime
from memstream.agents.store import recall, recall_events
from memstream.streams.api import ForgetRequest, GetRequest, RecallRequest
from memstream.streams.codec import encode
from memstream.streams.contracts import MemoryUpdate, UpdateKind


def register(app: faust.App, topics, runtime: Runtime) -> None:
    metrics = runtime.metrics

    @app.page("/recall/")
    class RecallView(View):
        async def post(self, request: Request) -> Response:
            body = await parse_body(request, RecallRequest)
            chosen = runtime.settings.recall.with_request(body.mode, body.budget, body.episode_turns)
            vector = (await runtime.embed([body.query]))[0]
            store = await runtime.store()
            if chosen.mode == "episodes":
                with metrics.store_timer("recall"):
                    episodes = await recall(
                        store,
                        vector,
                        body.tenant_id,
                        user_id=body.user_id,
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
                    body.tenant_id,
                    user_id=body.user_id,
                    session_id=body.session_id,
                    since=body.since,
                    until=body.until,
                    budget=chosen.budget,
                    episode_turns=chosen.episode_turns,
                    candidates=chosen.candidates,
                )
            return self.json({"mode": "events", "events": [e.to_dict() for e in events]})

    @app.page("/get/")
    class GetView(View):
        async def post(self, request: Request) -> Response:
            body = await parse_body(request, GetRequest)
            with metrics.store_timer("get"):
                events = await (await runtime.store()).events_by_ids(body.tenant_id, body.event_ids)
            return self.json({"events": [e.event_fields() for e in events]})

    @app.page("/forget/")
    class ForgetView(View):
        async def post(self, request: Request) -> Response:
            body = await parse_body(request, ForgetRequest)
            with metrics.store_timer("forget"):
                removed = await (await runtime.store()).forget(body.tenant_id, body.user_id)
            compensate.service(runtime).forget_tenant(body.tenant_id)  # the sketch cannot forget one user
            now = time.time()
            update = MemoryUpdate.make(
                UpdateKind.FORGOTTEN,
                body.tenant_id,
                [body.user_id],
                now,
                salt=f"{now:.6f}",
                user_id=body.user_id,
                payload={"points_removed": removed},
            )
            await topics.memory_updates.send(key=f"{body.tenant_id}/{body.user_id}".encode(), value=encode(update))
            return self.json({"removed": removed})

    compensate.register_views(app, runtime)  # POST /compensate/ (agents/compensate.py)

    @app.page("/healthz/")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, "app": runtime.settings.worker.app_id})
