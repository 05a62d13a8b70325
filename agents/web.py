"""HTTP API on every worker (Faust web views): recall, get, forget, health."""

from __future__ import annotations

import time
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import BaseModel, ValidationError

from agents.runtime import Runtime
from agents.store import recall
from streams.api import ForgetRequest, GetRequest, RecallRequest
from streams.codec import encode
from streams.contracts import MemoryUpdate


async def _body(view: View, request: Request, model: type[BaseModel]) -> BaseModel | Response:
    try:
        return model.model_validate(await request.json())
    except ValidationError as exc:
        return view.json({"error": "invalid request", "detail": exc.errors(include_url=False)}, status=400)
    except ValueError as exc:
        return view.json({"error": f"request body is not JSON: {exc}"}, status=400)


def register(app: faust.App, topics, runtime: Runtime) -> None:
    @app.page("/recall/")
    class RecallView(View):
        async def post(self, request: Request) -> Response:
            body = await _body(self, request, RecallRequest)
            if isinstance(body, Response):
                return body
            vector = (await runtime.embed([body.query]))[0]
            episodes = await recall(
                await runtime.store(), vector, body.tenant_id, user_id=body.user_id, session_id=body.session_id,
                k_s=body.k_s, k_c=body.k_c, since=body.since, until=body.until,
            )
            return self.json({"episodes": [e.to_dict() for e in episodes]})

    @app.page("/get/")
    class GetView(View):
        async def post(self, request: Request) -> Response:
            body = await _body(self, request, GetRequest)
            if isinstance(body, Response):
                return body
            events = await (await runtime.store()).events_by_ids(body.tenant_id, body.event_ids)
            return self.json({"events": [_event_dict(e) for e in events]})

    @app.page("/forget/")
    class ForgetView(View):
        async def post(self, request: Request) -> Response:
            body = await _body(self, request, ForgetRequest)
            if isinstance(body, Response):
                return body
            removed = await (await runtime.store()).forget(body.tenant_id, body.user_id)
            update = MemoryUpdate.make(
                "forgotten", body.tenant_id, [body.user_id], time.time(), user_id=body.user_id,
                payload={"points_removed": removed},
            )
            await topics.memory_updates.send(key=f"{body.tenant_id}/{body.user_id}".encode(), value=encode(update))
            return self.json({"removed": removed})

    @app.page("/healthz/")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, "app": runtime.settings.worker.app_id})


def _event_dict(event: Any) -> dict[str, Any]:
    return {
        "event_id": event.event_id, "tenant_id": event.tenant_id, "user_id": event.user_id,
        "session_id": event.session_id, "ts": event.ts, "role": event.role, "kind": event.kind,
        "text": event.text, "attributes": dict(event.attributes),
    }
