"""The fault tests' accounting (tests/integration/faults_util.UpdateLog): every announcement counted, a
repeated announcement classified as an identical replay or a divergent one, the first sealed version kept;
and the index stage's episode_sealed update id covers the episode's members."""

from __future__ import annotations

from memstream.agents.index import episode_update
from memstream.streams.codec import encode
from memstream.streams.contracts import EpisodeRecord, MemoryUpdate, UpdateKind
from tests.integration.faults_util import UpdateLog


def _sealed(members: list[str]) -> MemoryUpdate:
    record = EpisodeRecord(
        kind="sealed",
        tenant_id="t",
        user_id="u",
        session_id="s1",
        episode_index=0,
        event_ids=members,
        start_ts=1.0,
        end_ts=10.0,
    )
    return episode_update(record)


def _indexed(event_id: str) -> MemoryUpdate:
    return MemoryUpdate.make(UpdateKind.EVENT_INDEXED, "t", [event_id], 1.0, user_id="u", session_id="s1")


def test_identical_replays_are_counted_and_divergent_ones_reported() -> None:
    log = UpdateLog()
    first, resealed = _sealed(["e1", "e2"]), _sealed(["e1", "e2", "e3"])
    assert first.ids == resealed.ids and first.update_id != resealed.update_id  # the id covers the members
    log.add(encode(u) for u in [_indexed("e1"), _indexed("e2"), _indexed("e1"), first, first, resealed])

    identical, divergent = log.duplicates()
    assert identical == {"event_indexed": 1, "episode_sealed": 1}
    assert divergent == [(first, resealed)]
    assert log.sealed() == {("t", "s1", 0): ["e1", "e2"]}  # the first version, as subscribers keep it
    (problem,) = log.duplicate_problems()
    assert problem.startswith("1 announcements differ from the first about the same thing")
    assert "'e3'" in problem


def test_no_duplicates_no_problems() -> None:
    log = UpdateLog()
    log.add(encode(u) for u in [_indexed("e1"), _indexed("e2"), _sealed(["e1", "e2"])])
    assert log.duplicates() == ({}, [])
    assert log.duplicate_problems() == []


def test_only_a_sealed_episodes_id_covers_its_members() -> None:
    def update(kind: str, members: list[str]) -> MemoryUpdate:
        return episode_update(
            EpisodeRecord(
                kind=kind,
                tenant_id="t",
                user_id="u",
                session_id="s",
                episode_index=3,
                event_ids=members,
                start_ts=0.0,
                end_ts=1.0,
            )
        )

    assert update("sealed", ["a", "b"]).update_id == update("sealed", ["a", "b"]).update_id  # a replay repeats it
    assert update("sealed", ["a", "b"]).update_id != update("sealed", ["a", "c"]).update_id
    assert update("opened", ["a"]).update_id == update("opened", ["a", "b"]).update_id
    assert update("opened", ["a"]).update_id == MemoryUpdate.make(UpdateKind.EPISODE_OPENED, "t", ["s#3"], 0).update_id
