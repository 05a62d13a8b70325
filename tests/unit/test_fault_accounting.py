"""The fault tests' accounting (tests/integration/faults_util.UpdateLog): every announcement counted, a
repeated announcement classified as an identical replay or a divergent one, the first sealed version kept;
and the index stage's episode_sealed update id covers the episode's members; the reference of a crash-free
run, and the comparison of a store's content with it."""

from __future__ import annotations

import numpy as np

from memstream.agents.index import episode_update
from memstream.agents.settings import Settings
from memstream.agents.store import EdgeStore, EpisodePoint, EventPoint, StoreConfig
from memstream.streams.codec import encode
from memstream.streams.contracts import EpisodeRecord, InteractionEvent, MemoryUpdate, UpdateKind
from memstream.streams.frames import encode_with_vector
from tests.integration.faults_util import Reference, UpdateLog, content_problems, reference, store_content


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


# -- the store's content against the crash-free reference ---------------------------------------------------


def _session(rng: np.random.Generator, session: str, n: int) -> list[tuple[InteractionEvent, np.ndarray]]:
    """A session of `n` events whose vectors jump between two far-apart topics every 10 events, then its end."""
    centres = rng.normal(size=(2, 384)).astype(np.float32)
    events = []
    for i in range(n):
        vector = centres[(i // 10) % 2] + 0.05 * rng.normal(size=384).astype(np.float32)
        event = InteractionEvent(
            event_id=f"{session}-{i}", tenant_id="t", user_id="u", session_id=session, ts=100.0 + i, text=f"w{i % 7}"
        )
        events.append((event, vector / np.linalg.norm(vector)))
    end = InteractionEvent(
        event_id=f"{session}-end",
        tenant_id="t",
        user_id="u",
        session_id=session,
        ts=100.0 + n,
        kind="session_end",
        text="",
    )
    return [*events, (end, np.zeros(0, np.float32))]


async def _store_as_the_index_stage_does(state_dir, ref: Reference) -> None:
    """Events with their vectors, then each sealed episode: members' context first, then the episode."""
    async with EdgeStore(StoreConfig(), state_dir=state_dir) as store:
        await store.upsert_events([EventPoint.from_event(e, ref.vectors[k]) for k, e in ref.events.items()])
        episodes = [
            EpisodePoint(
                tenant_id=t,
                user_id="u",
                session_id=s,
                episode_index=i,
                start_ts=ref.sealed_span[(t, s, i)][0],
                end_ts=ref.sealed_span[(t, s, i)][1],
                event_ids=tuple(members),
                vector=ref.centroids[(t, s, i)],
                state="sealed",
            )
            for (t, s, i), members in ref.sealed.items()
        ]
        await store.apply_episode_context(episodes, Settings().recall.context_beta)
        await store.upsert_episodes(episodes)


async def test_the_store_of_a_crash_free_run_matches_and_each_difference_is_reported(tmp_path) -> None:
    rng = np.random.default_rng(7)
    published = [_session(rng, "s1", 40), _session(rng, "s2", 25)]
    stream = [e for session in published for e, _ in session]
    frames = [encode_with_vector(e, v) for session in published for e, v in session]
    frames.append(frames[3])  # a replayed copy: the reference keeps the first
    ref = reference(frames, Settings().segmentation, stream)
    assert len(ref.sealed) >= 4 and ref.duplicates == ["s1-3"] and not ref.unpublished and not ref.missing
    beta = Settings().recall.context_beta
    await _store_as_the_index_stage_does(tmp_path, ref)
    assert content_problems(ref, await store_content(tmp_path), beta) == []

    # an event written again after its episode was sealed (as a replay that skips the seal would) loses its
    # episode and context vector; another one is written with a vector 2e-6 away
    (key, event), far = next(iter(ref.events.items())), ref.vectors[next(iter(ref.events))] + 2e-6
    async with EdgeStore(StoreConfig(), state_dir=tmp_path) as store:
        await store.upsert_events([EventPoint.from_event(event, ref.vectors[key])])
        await store.upsert_events([EventPoint.from_event(ref.events[("t", "s2-1")], far)])  # another vector
    problems = content_problems(ref, await store_content(tmp_path), beta)
    assert any("2 events with another episode index" in p and "'s1-0'" in p for p in problems), problems
    assert any("2 events whose context vector differs" in p and "'s1-0'" in p for p in problems), problems
    assert any("1 events whose vector differs by more than 1e-06" in p and "'s2-1'" in p for p in problems), problems


def test_an_idle_seal_nobody_published_is_left_out_of_the_reference_and_listed() -> None:
    rng = np.random.default_rng(8)
    session = _session(rng, "s1", 30)
    stream = [e for e, _ in session]
    idle = InteractionEvent(
        event_id="idle-1", tenant_id="t", user_id="u", session_id="s1", ts=115.5, kind="session_idle", text=""
    )
    frames = [encode_with_vector(e, v) for e, v in session[:15]]
    frames += [encode_with_vector(idle, np.zeros(0, np.float32))]  # sealed early, after a fail-over
    frames += [encode_with_vector(e, v) for e, v in session[15:]]
    crash_free = reference([encode_with_vector(e, v) for e, v in session], Settings().segmentation, stream)
    ref = reference(frames, Settings().segmentation, stream)
    as_on_the_topic = reference(frames, Settings().segmentation)
    assert ref.unpublished == ["idle-1"]
    assert ref.sealed == crash_free.sealed and ref.update_ids == crash_free.update_ids
    assert as_on_the_topic.sealed != crash_free.sealed  # the topic's own records would hide the early seal
