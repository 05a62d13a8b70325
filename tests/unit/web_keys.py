"""API keys for web tests: put key records straight into a worker app's keyring (no Kafka)."""

from __future__ import annotations

import faust

from memstream.agents.auth import Guard
from memstream.streams.access import AccessKey, Scope, new_key

ALL_SCOPES = (Scope.READ, Scope.WRITE, Scope.FORGET)


def guard_of(app: faust.App) -> Guard:
    return app.memstream_runtime.guard


def add_key(app: faust.App, tenant: str, scopes=ALL_SCOPES, *, user: str | None = None) -> tuple[str, AccessKey]:
    """A new key for ``tenant`` known to the app's worker (whose keyring is then ready); returns (token, record)."""
    token, record = new_key(tenant, scopes, user_id=user)
    keyring = guard_of(app).keyring
    keyring.apply(record.key_id, record)
    keyring.ready = True
    return token, record


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
