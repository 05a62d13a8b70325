"""The HTTP API's refusals: each a Faust web error with its status code and the headers it must carry."""

from __future__ import annotations

from typing import Any, ClassVar

from faust.web.exceptions import WebError

__all__ = ["ApiError", "NotAuthenticated", "NotReady", "PayloadTooLarge", "PermissionDenied", "RateLimited"]


class ApiError(WebError):  # type: ignore[misc]  # faust is untyped
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.response_headers = {**type(self).headers, **(headers or {})}


class NotAuthenticated(ApiError):  # type: ignore[misc]
    """401: no credential, or one that is not valid (unknown, revoked, expired, badly signed)."""

    code = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="memstream"'}


class PermissionDenied(ApiError):  # type: ignore[misc]
    """403: a valid credential asking for something outside its tenant, user or scopes."""

    code = 403


class PayloadTooLarge(ApiError):  # type: ignore[misc]
    code = 413


class RateLimited(ApiError):  # type: ignore[misc]
    """429: the credential's request rate is over ``http.rate_limit``; Retry-After says when to come back."""

    code = 429


class NotReady(ApiError):  # type: ignore[misc]
    """503: the worker has not read its API keys yet."""

    code = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}
