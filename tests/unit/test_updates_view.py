"""What GET /updates/ sends (agents/updates.py): only the credential's tenant/user, from a valid cursor."""

from __future__ import annotations

import pytest
from faust.web.exceptions import ValidationError

from memstream.agents.auth import Target
from memstream.agents.updates import _kinds, _visible, format_cursor, parse_cursor
from memstream.streams.contracts import MemoryUpdate, UpdateKind


def _update(tenant: str, user: str | None, session: str = "s1", kind=UpdateKind.EVENT_INDEXED) -> MemoryUpdate:
    return MemoryUpdate.make(kind, tenant, ["e1"], 1.0, user_id=user, session_id=session)


def test_a_cursor_round_trips_and_bad_ones_are_a_400():
    positions = {0: 12, 1: 0, 3: 40}
    assert parse_cursor(format_cursor(positions), 4) == positions
    for bad in ("", "0:1,", "a:1", "0:-1", "4:0", "0:1;1:2"):
        with pytest.raises(ValidationError):
            parse_cursor(bad, 4)


def test_only_the_targets_tenant_and_user_are_visible():
    tenant_wide, user_bound = Target("a", None), Target("a", "u1")
    assert _visible(_update("a", "u2"), tenant_wide, None, None)
    assert not _visible(_update("b", "u1"), tenant_wide, None, None)
    assert _visible(_update("a", "u1"), user_bound, None, None)
    assert not _visible(_update("a", "u2"), user_bound, None, None)
    assert not _visible(_update("a", None, kind=UpdateKind.ERRORS_RESET), user_bound, None, None)
    assert not _visible(_update("a", "u1", session="s2"), user_bound, "s1", None)
    assert not _visible(_update("a", "u1"), user_bound, None, {"episode_sealed"})


def test_unknown_kinds_are_a_400():
    assert _kinds("event_indexed, episode_sealed") == {"event_indexed", "episode_sealed"}
    assert _kinds("") is None
    with pytest.raises(ValidationError):
        _kinds("event_indexed,everything")
