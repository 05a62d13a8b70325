"""The authorization policy (agents/auth/principal.authorize) and API keys (streams/access): pure, no worker."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from memstream.agents.auth import KeyRing, NotAuthenticated, PermissionDenied, Principal, authorize
from memstream.streams.access import AccessKey, Scope, digest, new_key, parse_key

TENANTS = st.sampled_from(["t1", "t2", "t3"])
USERS = st.none() | st.sampled_from(["u1", "u2"])
SCOPES = st.frozensets(st.sampled_from(list(Scope)), min_size=1)


@given(TENANTS, USERS, SCOPES, st.sampled_from(list(Scope)), st.none() | TENANTS, USERS)
def test_no_combination_reaches_beyond_the_credential(tenant, user, scopes, asked, body_tenant, body_user):
    principal = Principal(tenant, user, scopes, "key:x")
    try:
        target = authorize(principal, asked, body_tenant, body_user)
    except PermissionDenied:
        # refused only for a reason: a missing scope, another tenant, another user
        assert (
            not principal.may(asked)
            or (body_tenant not in (None, tenant) and Scope.ADMIN not in scopes)
            or (user is not None and body_user not in (None, user))
        )
        return
    assert asked in scopes or Scope.ADMIN in scopes
    assert target.tenant_id == tenant or (Scope.ADMIN in scopes and target.tenant_id == body_tenant)
    if user is not None:
        assert target.user_id == user  # a user-bound credential never acts on another user, nor on all users
    else:
        assert target.user_id == body_user


def test_a_key_is_shown_once_and_stored_as_its_digest():
    token, record = new_key("acme", ["read", "forget"], user_id="alice", label="support bot")
    key_id, secret = parse_key(token)
    assert key_id == record.key_id and secret not in record.model_dump_json()
    assert record.secret_sha256 == digest(secret) and record.matches(secret) and not record.matches(secret + "x")
    assert record.scopes == (Scope.FORGET, Scope.READ)
    assert AccessKey.model_validate_json(record.model_dump_json()) == record


@pytest.mark.parametrize("token", ["", "msk_", "msk_zz_abc", "Bearer x", "msk_0123456789abcdef_short", "a.b.c"])
def test_malformed_keys_do_not_parse(token):
    assert parse_key(token) is None


def test_the_keyring_refuses_unknown_wrong_revoked_and_deleted_keys_alike():
    ring = KeyRing()
    token, record = new_key("acme", ["read"])
    other, _ = new_key("acme", ["read"])
    ring.apply(record.key_id, record)
    principal = ring.authenticate(token)
    assert (principal.tenant_id, principal.user_id, principal.scopes) == ("acme", None, frozenset({Scope.READ}))
    key_id, secret = parse_key(token)
    wrong = f"msk_{key_id}_{secret[::-1]}"
    messages = set()
    for attempt in (other, wrong, "garbage"):
        with pytest.raises(NotAuthenticated) as refused:
            ring.authenticate(attempt)
        messages.add(refused.value.detail)
    ring.apply(record.key_id, record.revoked())
    with pytest.raises(NotAuthenticated) as refused:
        ring.authenticate(token)
    messages.add(refused.value.detail)
    ring.apply(record.key_id, record)
    ring.apply(record.key_id, None)  # a tombstone
    with pytest.raises(NotAuthenticated):
        ring.authenticate(token)
    assert len(messages) == 1  # nothing tells an unknown key from a revoked one or a wrong secret
