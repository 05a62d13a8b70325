"""``GET /updates/``: the caller's memory updates as server-sent events, filtered on the worker.

Each connection reads the ``memory-updates`` topic with a consumer of its own (no group, read_committed)
and sends only the updates of the credential's tenant (and its user, for a user-bound credential): a
subscriber never receives another tenant's update, not even to drop it. Query parameters: ``session_id``,
``kinds`` (comma-separated update kinds), ``from=end`` (default: only what comes next) or ``from=beginning``.
The first event (``ready``) carries the position the stream starts from; each event's ``id`` is a cursor (``partition:offset`` of the next record, for every partition); reconnecting
with it as ``Last-Event-ID`` (or ``?after=``) resumes exactly after the last update received. The credential is
checked again on every poll, so a revoked key's stream ends within a poll interval.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import faust
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.web import Request
from faust.web.exceptions import ValidationError as BadRequest

from memstream.agents.api_view import ApiView
from memstream.agents.auth import ApiError, Guard, Target
from memstream.agents.runtime import Runtime
from memstream.streams.access import Scope
from memstream.streams.codec import InvalidRecord, decode
from memstream.streams.contracts import MemoryUpdate, UpdateKind

__all__ = ["format_cursor", "parse_cursor", "register_views"]

_CURSOR = re.compile(r"^\d+:\d+(,\d+:\d+)*$")
POLL_S = 1.0

log = logging.getLogger(__name__)


def parse_cursor(text: str, partitions: int) -> dict[int, int]:
    """``"0:12,1:40"`` → {partition: next offset}; 400 for anything malformed or out of range."""
    if not _CURSOR.match(text):
        raise BadRequest("invalid cursor: expected partition:offset[,partition:offset…]")
    cursor = {int(p): int(o) for p, o in (item.split(":") for item in text.split(","))}
    if any(p >= partitions for p in cursor):
        raise BadRequest(f"invalid cursor: the topic has {partitions} partitions")
    return cursor


def format_cursor(positions: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))


def _kinds(text: str | None) -> set[str] | None:
    if not text:
        return None
    wanted = {k.strip() for k in text.split(",") if k.strip()}
    unknown = wanted - {k.value for k in UpdateKind}
    if unknown:
        raise BadRequest(f"unknown update kinds: {', '.join(sorted(unknown))}")
    return wanted


def _visible(update: MemoryUpdate, who: Target, session_id: str | None, kinds: set[str] | None) -> bool:
    return (
        update.tenant_id == who.tenant_id
        and (who.user_id is None or update.user_id == who.user_id)
        and (session_id is None or update.session_id == session_id)
        and (kinds is None or update.kind in kinds)
    )


def _frame(event: str, data: str, positions: dict[int, int]) -> bytes:
    return f"id: {format_cursor(positions)}\nevent: {event}\ndata: {data}\n\n".encode()


def register_views(app: faust.App, runtime: Runtime, guard: Guard) -> None:
    kafka = runtime.settings.kafka
    keepalive_s = runtime.settings.http.updates_keepalive_s

    async def _follow(
        request: Request,
        consumer: AIOKafkaConsumer,
        response: web.StreamResponse,
        positions: dict[int, int],
        wanted: Callable[[MemoryUpdate], bool],
    ) -> None:
        """Send the wanted updates as they come, a keepalive after ``keepalive_s`` of silence, until the
        credential stops being valid (an ``error`` event) or the subscriber leaves."""
        last_write = time.monotonic()
        while True:
            batches = await consumer.getmany(timeout_ms=int(POLL_S * 1000), max_records=500)
            try:  # a revoked or expired credential ends the stream
                await guard.principal(request)
            except ApiError as exc:
                await response.write(f"event: error\ndata: {exc.detail}\n\n".encode())
                return
            for tp in sorted(batches):
                for message in batches[tp]:
                    positions[tp.partition] = message.offset + 1
                    try:
                        update = decode(message.value, MemoryUpdate)
                    except InvalidRecord as exc:
                        log.error("unreadable memory update at %s offset %d: %s", tp, message.offset, exc)
                        continue
                    if wanted(update):
                        await response.write(_frame("memory-update", update.model_dump_json(), positions))
                        last_write = time.monotonic()
            if time.monotonic() - last_write >= keepalive_s:
                await response.write(b": keepalive\n\n")
                last_write = time.monotonic()

    @app.page("/updates/")
    class UpdatesView(ApiView):
        async def get(self, request: Request) -> web.StreamResponse:
            caller = await guard.caller(request)
            query = request.query
            who = caller.target(Scope.READ, query.get("tenant_id"), query.get("user_id"))
            session_id, kinds = query.get("session_id"), _kinds(query.get("kinds"))
            start = query.get("from", "end")
            if start not in ("end", "beginning"):
                raise BadRequest("from: 'end' or 'beginning'")
            resume = request.headers.get("Last-Event-ID") or query.get("after")
            cursor = parse_cursor(resume, kafka.partitions) if resume else None

            topic = kafka.topics.memory_updates
            consumer = AIOKafkaConsumer(
                **kafka.client_kwargs(), group_id=None, enable_auto_commit=False, isolation_level="read_committed"
            )
            await consumer.start()
            try:
                tps = [TopicPartition(topic, p) for p in range(kafka.partitions)]
                consumer.assign(tps)
                if start == "beginning":
                    await consumer.seek_to_beginning(*tps)
                else:
                    await consumer.seek_to_end(*tps)
                for tp in tps:
                    if cursor is not None and tp.partition in cursor:
                        consumer.seek(tp, cursor[tp.partition])
                positions = {tp.partition: await consumer.position(tp) for tp in tps}

                response = web.StreamResponse(
                    headers={
                        "Content-Type": "text/event-stream",
                        "Cache-Control": "no-cache",
                        "X-Accel-Buffering": "no",
                    }
                )
                await response.prepare(request)
                # the pinned position first: a client that reconnects before any update resumes from here
                await response.write(_frame("ready", "{}", positions))
                await _follow(request, consumer, response, positions, lambda u: _visible(u, who, session_id, kinds))
            except ConnectionResetError:
                pass  # the subscriber left
            finally:
                await consumer.stop()
            return response
