"""Authentication and authorization of the worker's HTTP API: API keys (the ``access`` topic), JWTs, scopes,
rate limits. The policy (``principal.authorize``) is pure; the rest feeds it."""

from memstream.agents.auth.errors import (
    ApiError,
    NotAuthenticated,
    NotReady,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
)
from memstream.agents.auth.guard import Caller, Guard, is_loopback
from memstream.agents.auth.keyring import KeyRing, follow_access_topic
from memstream.agents.auth.principal import Principal, Target, authorize

__all__ = [
    "ApiError",
    "Caller",
    "Guard",
    "KeyRing",
    "NotAuthenticated",
    "NotReady",
    "PayloadTooLarge",
    "PermissionDenied",
    "Principal",
    "RateLimited",
    "Target",
    "authorize",
    "follow_access_topic",
    "is_loopback",
]
