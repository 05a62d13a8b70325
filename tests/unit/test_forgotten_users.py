"""Forgotten users (agents/forgotten.py): what a stage drops on replay, and what it keeps."""

from __future__ import annotations

import pytest

from memstream.agents.forgotten import ForgottenUsers
from memstream.streams.forgetting import ForgetRecord


def test_a_forgotten_users_past_is_covered_and_their_future_and_others_are_not():
    users = ForgottenUsers()
    record = ForgetRecord(tenant_id="acme", user_id="alice", forgotten_at=100.0)
    users.apply(record.key, record.model_dump_json().encode())
    assert users.covers("acme", "alice", 99.0) and users.covers("acme", "alice", 100.0)
    assert not users.covers("acme", "alice", 100.5)  # what alice does after the forget is remembered again
    assert not users.covers("acme", "bob", 50.0)
    assert not users.covers("globex", "alice", 50.0)  # the same user id in another tenant is someone else
    assert not users.covers("acme", None, 50.0)


def test_a_later_forget_extends_an_earlier_one_and_never_shrinks_it():
    users = ForgottenUsers()
    users.apply_record(ForgetRecord(tenant_id="acme", user_id="alice", forgotten_at=200.0))
    users.apply_record(ForgetRecord(tenant_id="acme", user_id="alice", forgotten_at=100.0))  # replayed, older
    assert users.covers("acme", "alice", 150.0)
    users.apply("acme/alice", None)  # a tombstone: the operator lifted it
    assert not users.covers("acme", "alice", 150.0)


def test_an_unreadable_forget_record_fails_closed_for_the_user_its_key_names():
    users = ForgottenUsers()
    users.apply("acme/alice", b"{not json")
    assert users.covers("acme", "alice", 0.0) and users.covers("acme", "alice", 1e12)  # past and future
    assert not users.covers("acme", "bob", 0.0)
    record = ForgetRecord(tenant_id="acme", user_id="alice", forgotten_at=100.0)
    users.apply(record.key, record.model_dump_json().encode())  # a later forget never shrinks it
    assert users.covers("acme", "alice", 1e12)
    users.apply("acme/alice", None)  # only the operator's tombstone lifts it
    assert not users.covers("acme", "alice", 0.0)
    with pytest.raises(ValueError):  # a key that names no user: refused (the reader logs and skips it)
        users.apply("no-user-here", b"{not json")
