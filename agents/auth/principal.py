"""Who a request comes from, and what a request may touch: pure policy, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from faust.web.exceptions import ValidationError as BadRequest

from memstream.agents.auth.errors import PermissionDenied
from memstream.streams.access import Scope

__all__ = ["Principal", "Target", "authorize"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its tenant, its user when the credential is bound to one, its scopes."""

    tenant_id: str  # "" for the operator's admin key (auth.admin_key): bound to no tenant
    user_id: str | None
    scopes: frozenset[Scope]
    credential_id: str  # "key:<key id>" or "jwt:<subject>": what rate limits and logs name

    @property
    def admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def may(self, scope: Scope) -> bool:
        return scope in self.scopes or self.admin


@dataclass(frozen=True)
class Target:
    """The tenant and user a request acts on, once authorized."""

    tenant_id: str
    user_id: str | None


def authorize(principal: Principal, scope: Scope, tenant_id: str | None, user_id: str | None) -> Target:
    """What ``principal`` may act on when a request asks for ``scope`` on ``tenant_id``/``user_id`` (None: not
    named in the request). The credential decides: its tenant unless it is an admin naming another; its user
    when it is bound to one. A request naming anything else is refused (403), never silently narrowed."""
    if not principal.may(scope):
        raise PermissionDenied(f"this credential does not have the {scope.value!r} scope")
    if tenant_id is not None and tenant_id != principal.tenant_id and not principal.admin:
        raise PermissionDenied("this credential is not for the tenant the request names")
    if principal.user_id is not None and user_id is not None and user_id != principal.user_id:
        raise PermissionDenied("this credential is bound to another user than the request names")
    tenant = tenant_id or principal.tenant_id
    if not tenant:  # the operator's admin key belongs to no tenant
        raise BadRequest("tenant_id is required: this credential is not bound to a tenant")
    return Target(tenant, principal.user_id if principal.user_id is not None else user_id)
