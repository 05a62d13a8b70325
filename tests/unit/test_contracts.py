"""Contracts and codec: what is accepted, what is rejected and why."""

from __future__ import annotations

import math
from typing import get_args

import numpy as np
import orjson
import pytest

from memstream.streams.codec import InvalidRecord, dead_letter, decode, decode_feedback, decode_interaction, encode
from memstream.streams.contracts import EPISODE_UPDATES, EpisodeKind, InteractionEvent, MemoryUpdate, UpdateKind
from memstream.streams.frames import decode_with_vector, encode_with_vector
from memstream.streams.schemas import SCHEMA_DIR, schema_files


def event(**over) -> dict:
    base = {"event_id": "e1", "tenant_id": "t1", "user_id": "u1", "session_id": "s1", "ts": 1.5, "text": "hello"}
    base.update(over)
    return base


def raw(d) -> bytes:
    return orjson.dumps(d)


def test_valid_event_round_trips_and_keys_by_tenant_and_session():
    record = decode_interaction(raw(event(attributes={"lang": "en", "n": 3})))
    assert record.role == "user" and record.kind == "message"
    assert record.key == b"t1/s1"
    assert decode_interaction(encode(record)) == record


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "expected a JSON object"),
        (b"", "empty record"),
        (raw({k: v for k, v in event().items() if k != "session_id"}), "session_id"),
        (raw(event(ts="yesterday")), "ts"),
        (raw(event(ts=-1)), "ts"),
        (raw(event(text=5)), "text"),
        (raw(event(role="robot")), "role"),
        (raw(event(tenant_id="a/b")), "tenant_id"),
        (raw(event(extra_field=1)), "extra_field"),
        (raw(event(schema_version=2)), "schema_version"),
        (raw(event(text="x" * 20_000)), "limit"),
        (b'{"event_id":"e","tenant_id":"t","user_id":"u","session_id":"s","ts":NaN,"text":""}', "JSON"),
        (raw(event(attributes={"x": [1]})), "attributes"),
    ],
)
def test_invalid_records_are_rejected_with_a_reason(payload, fragment):
    with pytest.raises(InvalidRecord) as info:
        decode_interaction(payload)
    assert fragment in info.value.reason


def test_text_limit_comes_from_the_caller():
    decode_interaction(raw(event(text="x" * 100)), max_text_chars=100)
    with pytest.raises(InvalidRecord, match="more than the limit of 99"):
        decode_interaction(raw(event(text="x" * 100)), max_text_chars=99)


def test_feedback_requires_features_and_bounded_prediction():
    good = {
        "event_id": "f1",
        "tenant_id": "t",
        "user_id": "u",
        "item_id": "i",
        "features": {"vector": [0.1, 0.2]},
        "prediction": 0.3,
        "label": 1,
        "model_version": "v1",
        "ts": 3,
    }
    assert decode_feedback(raw(good)).key == b"t/u"
    with pytest.raises(InvalidRecord, match="features"):
        decode_feedback(raw({**good, "features": {"text": "  "}}))
    with pytest.raises(InvalidRecord, match="prediction"):
        decode_feedback(raw({**good, "prediction": 1.5}))


def test_vector_frame_round_trip_is_float32_bytes():
    record = decode_interaction(raw(event()))
    vec = np.linspace(-1, 1, 384, dtype=np.float32)
    frame = encode_with_vector(record, vec)
    assert len(frame) < len(encode(record)) + 384 * 4 + 16
    back, back_vec = decode_with_vector(frame, InteractionEvent)
    assert back == record and np.array_equal(back_vec, vec)


def test_update_ids_are_deterministic_for_deduplication():
    a = MemoryUpdate.make(UpdateKind.EVENT_RECEIVED, "t", ["e1"], 1.0, session_id="s")
    b = MemoryUpdate.make(UpdateKind.EVENT_RECEIVED, "t", ["e1"], 2.0, session_id="s")
    c = MemoryUpdate.make(UpdateKind.EVENT_RECEIVED, "t2", ["e1"], 1.0, session_id="s")
    assert a.update_id == b.update_id != c.update_id


def test_update_kinds_travel_as_their_strings():
    update = MemoryUpdate.make(UpdateKind.EPISODE_SEALED, "t", ["s#0"], 1.0, session_id="s")
    wire = orjson.loads(encode(update))
    assert wire["kind"] == "episode_sealed"
    back = decode(encode(update), MemoryUpdate)
    assert back == update and back.kind is UpdateKind.EPISODE_SEALED and back.kind == "episode_sealed"
    with pytest.raises(InvalidRecord, match="kind"):
        decode(raw({**wire, "kind": "episode_lost"}), MemoryUpdate)


def test_every_episode_record_kind_is_announced_by_its_own_update():
    assert set(EPISODE_UPDATES) == set(get_args(EpisodeKind))
    assert {k.value for k in EPISODE_UPDATES.values()} == {"episode_opened", "episode_sealed"}


def test_dead_letter_keeps_raw_bytes_and_source():
    letter = dead_letter(b"\xff\x00junk", "bad", stage="embed", topic="x", partition=3, offset=42, key=b"k")
    assert (letter.partition, letter.offset, letter.source_topic) == (3, 42, "x")
    import base64

    assert base64.b64decode(letter.raw_b64) == b"\xff\x00junk"
    assert not math.isnan(letter.ts)


def test_committed_json_schemas_match_the_models():
    for name, data in schema_files().items():
        assert (SCHEMA_DIR / name).read_bytes().strip() == data, (
            f"regenerate with python -m memstream.streams.schemas ({name})"
        )


def test_generic_decode_rejects_wrong_model_fields():
    with pytest.raises(InvalidRecord):
        decode(raw(event()), MemoryUpdate)


def test_dead_letter_of_a_huge_record_is_capped_but_identifiable():
    import base64
    import hashlib

    from memstream.streams.contracts import MAX_DEAD_LETTER_RAW

    raw = b"x" * (MAX_DEAD_LETTER_RAW + 10)
    letter = dead_letter(raw, "too big", stage="embed", topic="t", partition=0, offset=1, key=None)
    assert letter.raw_truncated and letter.raw_size == len(raw)
    assert letter.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert base64.b64decode(letter.raw_b64) == raw[:MAX_DEAD_LETTER_RAW]
    assert len(encode(letter)) < 1_000_000


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_schema_version_must_be_the_integer_one(version):
    with pytest.raises(InvalidRecord, match="schema_version"):
        decode_interaction(raw(event(schema_version=version)))


def test_salted_updates_differ():
    a = MemoryUpdate.make(UpdateKind.FORGOTTEN, "t", ["u"], 1.0, salt="1")
    b = MemoryUpdate.make(UpdateKind.FORGOTTEN, "t", ["u"], 2.0, salt="2")
    assert a.update_id != b.update_id
