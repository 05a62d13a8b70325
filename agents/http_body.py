"""Request bodies of the worker's web views: JSON within the size limit, validated as a pydantic model, or a
clear 4xx that says why (413 too large, 400 not JSON or invalid) — never a 500."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from faust.web import Request
from faust.web.exceptions import ValidationError as WebValidationError
from pydantic import BaseModel, ValidationError

from memstream.agents.auth.errors import PayloadTooLarge
from memstream.streams.codec import validation_reason

__all__ = ["json_body", "parse_body", "validated"]

M = TypeVar("M", bound=BaseModel)


async def json_body(request: Request) -> Any:
    """The request's body parsed as JSON; 413 above the web app's ``client_max_size`` (``http.max_body_bytes``),
    400 if it is not JSON (orjson refuses nesting deeper than 1024 levels instead of overflowing the stack)."""
    limit = request.client_max_size  # aiohttp's limit, set from http.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes is over the limit of {limit}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the limit
        raise PayloadTooLarge(f"request body is over the limit of {limit} bytes") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise WebValidationError(f"request body is not JSON: {exc}") from None


def validated(data: Any, model: type[M]) -> M:
    """``data`` validated as ``model``; a 400 error naming the model and the problems otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise WebValidationError(f"invalid {model.__name__}: {validation_reason(exc)}") from None


async def parse_body(request: Request, model: type[M]) -> M:
    """The request's JSON body validated as ``model``; a clear 4xx error otherwise."""
    return validated(await json_body(request), model)
