"""JWTs as credentials, verified by PyJWT with a configured public key or a JWKS endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import jwt
from pydantic import TypeAdapter, ValidationError

from memstream.agents.auth.errors import NotAuthenticated
from memstream.agents.auth.principal import Principal
from memstream.agents.settings import AuthSettings
from memstream.streams.access import Scope
from memstream.streams.contracts import Ident

__all__ = ["JwtVerifier", "looks_like_jwt"]


_IDENT: TypeAdapter[str] = TypeAdapter(Ident)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def _scopes(value: Any) -> frozenset[Scope]:
    names: Iterable[Any] = value.split() if isinstance(value, str) else value if isinstance(value, list) else ()
    known = {s.value for s in Scope}
    return frozenset(Scope(n) for n in names if isinstance(n, str) and n in known)


class JwtVerifier:
    """Checks signature, expiry (required), and the configured audience and issuer; maps claims to a Principal."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._key: str | None = None
        self._jwks: jwt.PyJWKClient | None = None
        if settings.jwt_public_key_file is not None:
            self._key = settings.jwt_public_key_file.read_text()
        elif settings.jwt_jwks_url:
            self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True)

    @property
    def enabled(self) -> bool:
        return self._key is not None or self._jwks is not None

    async def verify(self, token: str) -> Principal:
        s = self.settings
        try:
            if self._jwks is not None:  # a blocking HTTP fetch when the key is not cached yet
                key: Any = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
            else:
                key = self._key
            claims = jwt.decode(
                token,
                key,
                algorithms=s.jwt_algorithms,
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                options={"require": ["exp"], "verify_aud": s.jwt_audience is not None},
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise NotAuthenticated(f"invalid token: {exc}") from None
        try:
            tenant = _IDENT.validate_python(claims.get(s.jwt_tenant_claim))
            user = None if claims.get(s.jwt_user_claim) is None else _IDENT.validate_python(claims[s.jwt_user_claim])
        except ValidationError:
            raise NotAuthenticated(
                f"invalid token: {s.jwt_tenant_claim!r} (and {s.jwt_user_claim!r} if present) must be identifiers"
            ) from None
        scopes = _scopes(claims.get(s.jwt_scope_claim))
        if not scopes:
            raise NotAuthenticated(f"invalid token: no known scope in {s.jwt_scope_claim!r}")
        return Principal(tenant, user, scopes, f"jwt:{claims.get('sub') or tenant}")
