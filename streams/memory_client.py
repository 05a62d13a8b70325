"""The one HTTP client of a worker's API: recall, get, forget, compensate (sync ``MemoryClient``, async
``AsyncMemoryClient``). Requests are validated by the same models the worker validates them with, so bad input
fails here with the reason, before anything is sent; an error answer raises ``MemoryApiError`` with the
worker's status and message."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse
from pydantic import BaseModel, ValidationError

from memstream.streams.api import (
    CompensateBatchRequest,
    CompensateRequest,
    ForgetRequest,
    GetRequest,
    PublishRequest,
    RecallRequest,
)
from memstream.streams.codec import InvalidRecord, validation_reason
from memstream.streams.contracts import MemoryUpdate
from memstream.streams.settings import ApiSettings, client_settings

Json = dict[str, Any]
_STREAM_TIMEOUT = httpx.Timeout(30.0, read=None)  # an update stream may be quiet for long: no read timeout


class MemoryApiError(RuntimeError):
    """The worker refused a request (4xx) or failed (5xx); ``status`` and ``detail`` say what it answered."""

    def __init__(self, status: int, detail: str, url: str) -> None:
        super().__init__(f"{url} answered {status}: {detail}")
        self.status, self.detail, self.url = status, detail, url


def _validated(model: type[BaseModel], body: Mapping[str, Any]) -> Json:
    try:
        return model.model_validate(dict(body)).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        raise InvalidRecord(f"invalid {model.__name__}: {validation_reason(exc)}") from None


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise MemoryApiError(response.status_code, response.text.strip()[:2000], str(response.request.url))
    return response.json()


def _recall_body(query: str, tenant_id: str | None, options: Mapping[str, Any]) -> Json:
    return _validated(RecallRequest, {"query": query, "tenant_id": tenant_id, **options})


def _recalled(answer: Json) -> list[Json]:
    return list(answer["events"] if answer.get("mode") == "events" else answer["episodes"])


def _compensate_batch(queries: Iterable[Mapping[str, Any] | CompensateRequest]) -> Json:
    items = [q.model_dump(mode="json") if isinstance(q, CompensateRequest) else dict(q) for q in queries]
    return _validated(CompensateBatchRequest, {"queries": items})


def _publish_body(events: Iterable[Mapping[str, Any]]) -> Json:
    return _validated(PublishRequest, {"events": [dict(e) for e in events]})


def _on_sse(event: ServerSentEvent, params: Json, url: str) -> tuple[str, MemoryUpdate] | None:
    """One event of ``/updates/``: keeps the cursor to resume from in ``params`` (``ready`` carries the position
    the worker pinned, each update the one after it); returns the update it carries, if any."""
    if event.event == "error":  # the credential was revoked or expired mid-stream
        raise MemoryApiError(401, event.data, url)
    if event.event in ("ready", "memory-update"):
        params["after"] = event.id
    if event.event == "memory-update":
        return event.id, MemoryUpdate.model_validate_json(event.data)
    return None


class _Base:
    def __init__(self, url: str | None, timeout_s: float | None, key: str | None) -> None:
        api: ApiSettings = client_settings().api
        self.url = (url or api.url).rstrip("/")
        self.timeout_s = timeout_s if timeout_s is not None else api.timeout_s
        key = key or (api.key.get_secret_value() if api.key else None)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}


def _updates_params(
    session_id: str | None, kinds: Iterable[str] | None, from_beginning: bool, after: str | None
) -> Json:
    params: Json = {"from": "beginning" if from_beginning else "end"}
    if session_id:
        params["session_id"] = session_id
    if kinds:
        params["kinds"] = ",".join(kinds)
    if after:
        params["after"] = after
    return params


class MemoryClient(_Base):
    """Blocking client of a worker's HTTP API. ``with MemoryClient() as memory: memory.recall(...)``.

    ``url`` defaults to ``MEMSTREAM_API__URL`` (http://127.0.0.1:6066)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        key: str | None = None,
        timeout_s: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, timeout_s, key)
        self._http = httpx.Client(base_url=self.url, timeout=self.timeout_s, transport=transport, headers=self.headers)

    def __enter__(self) -> MemoryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: Json) -> Any:
        return _answer(self._http.post(path, json=body))

    def recall(
        self,
        query: str,
        *,
        tenant_id: str | None = None,
        mode: Literal["events", "episodes"] | None = None,
        **options: Any,
    ) -> list[Json]:
        """Events best first (``mode="events"``, the default: ``budget``, ``episode_turns``), or episodes in time
        order (``mode="episodes"``: ``k_s``, ``k_c``); ``user_id``, ``session_id``, ``since``, ``until`` filter."""
        return _recalled(self._post("/recall/", _recall_body(query, tenant_id, {"mode": mode, **options})))

    def get(self, *, tenant_id: str | None = None, event_ids: Iterable[str]) -> list[Json]:
        """The stored events with these ids (those the store holds, in no particular order)."""
        body = _validated(GetRequest, {"tenant_id": tenant_id, "event_ids": list(event_ids)})
        return list(self._post("/get/", body)["events"])

    def forget(self, *, tenant_id: str | None = None, user_id: str | None = None) -> int:
        """Erase a user's memory; returns the number of points removed."""
        return int(
            self._post("/forget/", _validated(ForgetRequest, {"tenant_id": tenant_id, "user_id": user_id}))["removed"]
        )

    def compensate(self, **query: Any) -> Json:
        """One compensated prediction (fields of ``CompensateRequest``)."""
        return dict(self._post("/compensate/", _validated(CompensateRequest, query)))

    def compensate_many(self, queries: Iterable[Mapping[str, Any] | CompensateRequest]) -> list[Json]:
        """Many compensated predictions in one call (their texts are embedded in one batch)."""
        return list(self._post("/compensate/", _compensate_batch(queries))["results"])

    def health(self) -> Json:
        return dict(_answer(self._http.get("/healthz/")))

    def publish(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Publish interaction/feedback events through the worker (``POST /events/``, write scope); the tenant
        may be left out (it is the credential's). Returns the count once the broker has them all."""
        return int(self._post("/events/", _publish_body(events))["accepted"])

    def updates(
        self,
        *,
        session_id: str | None = None,
        kinds: Iterable[str] | None = None,
        from_beginning: bool = False,
        after: str | None = None,
    ) -> Iterator[tuple[str, MemoryUpdate]]:
        """See ``AsyncMemoryClient.updates``."""
        params = _updates_params(session_id, kinds, from_beginning, after)
        while True:
            try:
                with connect_sse(self._http, "GET", "/updates/", params=params, timeout=_STREAM_TIMEOUT) as sse:
                    if sse.response.status_code >= 400:
                        sse.response.read()
                        _answer(sse.response)
                    for event in sse.iter_sse():
                        item = _on_sse(event, params, str(sse.response.url))
                        if item is not None:
                            yield item
            except (httpx.RemoteProtocolError, httpx.ReadError):
                continue


class AsyncMemoryClient(_Base):
    """The same API as ``MemoryClient``, awaitable. ``async with AsyncMemoryClient() as memory: ...``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        key: str | None = None,
        timeout_s: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, timeout_s, key)
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=self.timeout_s, transport=transport, headers=self.headers
        )

    async def __aenter__(self) -> AsyncMemoryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: Json) -> Any:
        return _answer(await self._http.post(path, json=body))

    async def recall(
        self,
        query: str,
        *,
        tenant_id: str | None = None,
        mode: Literal["events", "episodes"] | None = None,
        **options: Any,
    ) -> list[Json]:
        """See ``MemoryClient.recall``."""
        return _recalled(await self._post("/recall/", _recall_body(query, tenant_id, {"mode": mode, **options})))

    async def get(self, *, tenant_id: str | None = None, event_ids: Iterable[str]) -> list[Json]:
        body = _validated(GetRequest, {"tenant_id": tenant_id, "event_ids": list(event_ids)})
        return list((await self._post("/get/", body))["events"])

    async def forget(self, *, tenant_id: str | None = None, user_id: str | None = None) -> int:
        body = _validated(ForgetRequest, {"tenant_id": tenant_id, "user_id": user_id})
        return int((await self._post("/forget/", body))["removed"])

    async def compensate(self, **query: Any) -> Json:
        return dict(await self._post("/compensate/", _validated(CompensateRequest, query)))

    async def compensate_many(self, queries: Iterable[Mapping[str, Any] | CompensateRequest]) -> list[Json]:
        return list((await self._post("/compensate/", _compensate_batch(queries)))["results"])

    async def health(self) -> Json:
        return dict(_answer(await self._http.get("/healthz/")))

    async def publish(self, events: Iterable[Mapping[str, Any]]) -> int:
        """See ``MemoryClient.publish``."""
        return int((await self._post("/events/", _publish_body(events)))["accepted"])

    async def updates(
        self,
        *,
        session_id: str | None = None,
        kinds: Iterable[str] | None = None,
        from_beginning: bool = False,
        after: str | None = None,
        on_connect: Callable[[], object] | None = None,
    ) -> AsyncIterator[tuple[str, MemoryUpdate]]:
        """The credential's memory updates as they are announced, with the cursor after each
        (``GET /updates/``, server-sent events filtered by the worker). Pass a cursor back as ``after`` to
        resume exactly after that update; a dropped connection is resumed that way automatically."""
        params = _updates_params(session_id, kinds, from_beginning, after)
        while True:
            try:
                async with aconnect_sse(self._http, "GET", "/updates/", params=params, timeout=_STREAM_TIMEOUT) as sse:
                    if sse.response.status_code >= 400:
                        await sse.response.aread()
                        _answer(sse.response)
                    async for event in sse.aiter_sse():
                        item = _on_sse(event, params, str(sse.response.url))
                        if event.event == "ready" and on_connect is not None:
                            on_connect()
                        if item is not None:
                            yield item
            except (httpx.RemoteProtocolError, httpx.ReadError):
                continue  # the worker went away mid-stream: reconnect from the last cursor
