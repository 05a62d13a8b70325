"""Backend-neutral filters. A :class:`Scope` cannot be built without a tenant, and backends accept
nothing else for reads, counts and deletes: the tenant filter is part of every store query by
construction, never applied to results afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AnyOf", "Condition", "HasIds", "Match", "Range", "Scope", "require_tenant", "scope", "time_window"]


@dataclass(frozen=True, slots=True)
class Match:
    key: str
    value: str | int


@dataclass(frozen=True, slots=True)
class AnyOf:
    key: str
    values: tuple[str, ...] | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Range:
    key: str
    gte: float | None = None
    lte: float | None = None
    lt: float | None = None


@dataclass(frozen=True, slots=True)
class HasIds:
    ids: tuple[str, ...]


Condition = Match | AnyOf | Range | HasIds


def require_tenant(tenant_id: object) -> str:
    """The tenant id, or ValueError if it is not a non-empty string."""
    if not isinstance(tenant_id, str) or not tenant_id:
        raise ValueError(f"tenant_id must be a non-empty string, got {tenant_id!r}")
    return tenant_id


@dataclass(frozen=True, slots=True)
class Scope:
    """Conditions that must all hold (``must``) and none of which may (``must_not``).

    ``tenant_id`` is its own field so no code path can build a scope that omits it;
    ``tenant_id=None`` is allowed only through :meth:`all_tenants`, used by ``count`` alone.
    """

    tenant_id: str | None
    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        if self.tenant_id is not None:
            require_tenant(self.tenant_id)

    @classmethod
    def all_tenants(cls) -> Scope:
        return cls(tenant_id=None)

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """The ``must`` list as sent to the store, tenant first."""
        if self.tenant_id is None:
            return self.must
        return (Match("tenant_id", self.tenant_id), *self.must)


def scope(
    tenant_id: str,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    must: Sequence[Condition] = (),
    must_not: Sequence[Condition] = (),
) -> Scope:
    """A tenant's scope, narrowed to a user and/or a session when given."""
    require_tenant(tenant_id)
    conditions: list[Condition] = []
    if user_id is not None:
        conditions.append(Match("user_id", user_id))
    if session_id is not None:
        conditions.append(Match("session_id", session_id))
    conditions.extend(must)
    return Scope(tenant_id, tuple(conditions), tuple(must_not))


def time_window(
    since: float | None, until: float | None, *, start_key: str = "ts", end_key: str | None = None
) -> list[Condition]:
    """Points in [since, until]; for spans (``end_key`` given), spans overlapping it."""
    conditions: list[Condition] = []
    if since is not None:
        conditions.append(Range(end_key or start_key, gte=float(since)))
    if until is not None:
        conditions.append(Range(start_key, lte=float(until)))
    return conditions
