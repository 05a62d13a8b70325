"""The base of the worker's API views: a refusal answers its status, its reason and the headers it carries
(``WWW-Authenticate`` on a 401, ``Retry-After`` on a 429 or 503)."""

from __future__ import annotations

from faust.web import Request, Response, View
from faust.web.exceptions import WebError

__all__ = ["ApiView"]


class ApiView(View):  # type: ignore[misc]  # faust is untyped
    async def on_request_error(self, request: Request, exc: WebError) -> Response:
        response = self.error(exc.code, exc.detail, **exc.extra_context)
        for name, value in getattr(exc, "response_headers", {}).items():
            response.headers[name] = value
        return response
