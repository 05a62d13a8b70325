"""Request bodies of the worker's web views: JSON, validated as a pydantic model, or a 400 that says why."""

from __future__ import annotations

from typing import Any, TypeVar

from faust.web import Request
from faust.web.exceptions import ValidationError as WebValidationError
from pydantic import BaseModel, ValidationError

from memstream.streams.codec import validation_reason

__all__ = ["json_body", "parse_body", "validated"]

M = TypeVar("M", bound=BaseModel)


async def json_body(request: Request) -> Any:
    """The request's body parsed as JSON; a 400 error if it is not JSON."""
    try:
        return await request.json()
    except ValueError as exc:
        raise WebValidationError(f"request body is not JSON: {exc}") from None


def validated(data: Any, model: type[M]) -> M:
    """``data`` validated as ``model``; a 400 error naming the model and the problems otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise WebValidationError(f"invalid {model.__name__}: {validation_reason(exc)}") from None


async def parse_body(request: Request, model: type[M]) -> M:
    """The request's JSON body validated as ``model``; a clear 400 error otherwise."""
    return validated(await json_body(request), model)
