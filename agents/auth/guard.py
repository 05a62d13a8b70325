"""The HTTP API's gate: who is calling (API key or JWT), what they may touch, how often."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import time
from dataclasses import dataclass

from aiohttp import web
from faust.web.exceptions import ValidationError as BadRequest
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from memstream.agents.auth.errors import NotAuthenticated, NotReady, RateLimited
from memstream.agents.auth.jwt_tokens import JwtVerifier, looks_like_jwt
from memstream.agents.auth.keyring import KeyRing
from memstream.agents.auth.principal import Principal, Target, authorize
from memstream.agents.settings import Settings
from memstream.streams.access import Scope, digest

__all__ = ["Caller", "Guard", "is_loopback"]

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """One per worker. ``caller`` authenticates a request and applies the rate limit; the Caller it returns
    authorizes what the request names (with ``auth.mode=none`` it only checks that a tenant is named)."""

    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth.mode
        self.settings = settings.auth
        self.keyring = KeyRing()
        self.jwt = JwtVerifier(settings.auth)
        admin = settings.auth.admin_key
        self._admin_digest = digest(admin.get_secret_value()) if admin else None
        self._limit = parse(settings.http.rate_limit)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        if self.mode == "none" and not is_loopback(settings.worker.web_host):
            log.warning(
                "MEMSTREAM_AUTH__MODE=none on %s: anyone who reaches this port can read and erase any tenant's "
                "memory. Use it for local development only.",
                settings.worker.web_host,
            )

    async def principal(self, request: web.Request) -> Principal | None:
        """The caller's identity (None when auth is off); 401 without a valid credential."""
        if self.mode == "none":
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise NotAuthenticated("an `Authorization: Bearer <API key or JWT>` header is required")
        if self._admin_digest is not None and hmac.compare_digest(digest(token), self._admin_digest):
            return Principal("", None, frozenset({Scope.ADMIN}), "admin-key")
        if looks_like_jwt(token):
            if not self.jwt.enabled:
                raise NotAuthenticated("JWTs are not accepted by this worker (no auth.jwt_public_key_file/jwks_url)")
            return await self.jwt.verify(token)
        if not self.keyring.ready:
            waited = time.monotonic() - self.keyring.created
            if waited > self.settings.keys_ready_timeout_s:
                log.error("API keys still not loaded after %.0f s: is the access topic readable?", waited)
            raise NotReady("the worker is still loading its API keys; retry shortly")
        return self.keyring.authenticate(token)

    def limit(self, principal: Principal | None) -> None:
        """429 once the caller's credential is over the rate limit (no limit with auth off: no credential)."""
        if principal is None:
            return
        who = principal.credential_id
        if not self._limiter.hit(self._limit, who):
            reset = self._limiter.get_window_stats(self._limit, who).reset_time
            retry = max(1, math.ceil(reset - time.time()))
            raise RateLimited(f"rate limit {self._limit} exceeded", headers={"Retry-After": str(retry)})

    async def caller(self, request: web.Request, *, limited: bool = False) -> Caller:
        """The authenticated caller (401, 503), rate-limited when ``limited`` (429). Call it before reading the
        body: a request without a valid credential learns nothing, not even what a valid body looks like."""
        principal = await self.principal(request)
        if limited:
            self.limit(principal)
        return Caller(principal)


@dataclass(frozen=True)
class Caller:
    """A request's caller: its Principal, or None when auth is off (``auth.mode=none``)."""

    principal: Principal | None

    def target(self, scope: Scope, tenant_id: str | None, user_id: str | None = None) -> Target:
        """The tenant and user the request may act on (403 outside the credential; with auth off, the body
        must name the tenant: 400)."""
        if self.principal is None:
            if tenant_id is None:
                raise BadRequest("tenant_id is required (auth.mode=none: no credential to take it from)")
            return Target(tenant_id, user_id)
        return authorize(self.principal, scope, tenant_id, user_id)
