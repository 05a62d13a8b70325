"""``POST /events/``: publish events through a worker, for callers that hold an API key but no Kafka
credentials. Write scope; every event's tenant (and user, for a user-bound credential) is checked against the
credential before any is sent; the whole batch is validated first, so a bad event sends nothing."""

from __future__ import annotations

import asyncio

import faust
from faust.web import Request, Response
from faust.web.exceptions import ValidationError as BadRequest

from memstream.agents.api_view import ApiView
from memstream.agents.http_body import parse_body
from memstream.agents.runtime import Runtime
from memstream.streams.access import Scope
from memstream.streams.api import PublishRequest
from memstream.streams.client import coerce_event
from memstream.streams.codec import InvalidRecord, encode
from memstream.streams.contracts import FeedbackEvent

__all__ = ["register_views"]


def _named(event: dict, field: str) -> str | None:
    value = event.get(field)
    return value if isinstance(value, str) else None


def register_views(app: faust.App, topics, runtime: Runtime) -> None:
    guard = runtime.guard

    @app.page("/events/")
    class EventsView(ApiView):
        async def post(self, request: Request) -> Response:
            caller = await guard.caller(request, limited=True)
            body = await parse_body(request, PublishRequest)
            records = []
            for i, event in enumerate(body.events):
                who = caller.target(Scope.WRITE, _named(event, "tenant_id"), _named(event, "user_id"))
                filled = {**event, "tenant_id": who.tenant_id}
                if who.user_id is not None:
                    filled["user_id"] = who.user_id
                try:
                    records.append(coerce_event(filled))
                except InvalidRecord as exc:
                    raise BadRequest(f"event {i}: {exc.reason}") from None
            sent = []
            for record in records:
                topic = topics.feedback if isinstance(record, FeedbackEvent) else topics.interactions
                sent.append(await topic.send(key=record.key, value=encode(record)))
            await asyncio.gather(*sent)  # answered once the broker has acknowledged every event
            return self.json({"accepted": len(records)})
