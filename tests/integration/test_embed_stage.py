"""The entry stage end to end on the real broker: valid events are announced and embedded, invalid ones
dead-lettered."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest

from memstream.streams.client import Publisher, subscribe
from memstream.streams.codec import decode
from memstream.streams.contracts import DeadLetter, InteractionEvent, UpdateKind
from memstream.streams.frames import decode_with_vector
from tests.integration.harness import Namespace, collect

pytestmark = pytest.mark.integration

INVALID = [
    b"{not json",
    b"\xff\xfe binary junk \x00",
    b"[]",
    orjson.dumps({"event_id": "x", "tenant_id": "t", "user_id": "u", "ts": 1, "text": "no session"}),
    orjson.dumps({"event_id": "x", "tenant_id": "t", "user_id": "u", "session_id": "s", "ts": "soon", "text": "t"}),
    orjson.dumps({"event_id": "x", "tenant_id": "t", "user_id": "u", "session_id": "s", "ts": 1, "text": "y" * 20_000}),
    orjson.dumps(
        {
            "schema_version": 9,
            "event_id": "x",
            "tenant_id": "t",
            "user_id": "u",
            "session_id": "s",
            "ts": 1,
            "text": "future",
        }
    ),
    b'{"event_id":"x","tenant_id":"t","user_id":"u","session_id":"s","ts":NaN,"text":"nan"}',
]


def valid(i: int) -> dict:
    return {
        "event_id": f"e{i}",
        "tenant_id": f"tenant{i % 3}",
        "user_id": f"u{i % 7}",
        "session_id": f"s{i % 25}",
        "ts": 1_700_000_000 + i,
        "text": f"message number {i}",
    }


async def test_thousand_valid_and_hundred_invalid(kafka_bootstrap, tmp_path):
    ns = Namespace(kafka_bootstrap, tmp_path)
    await ns.create_topics()
    ns.start_worker(stages="embed")
    try:
        async with subscribe(kinds=[UpdateKind.EVENT_RECEIVED], kafka=ns.kafka) as updates:
            async with Publisher(ns.kafka) as pub:
                await pub.publish_many(valid(i) for i in range(1000))
                for i in range(100):
                    await pub.publish_raw(ns.kafka.topics.interactions, INVALID[i % len(INVALID)], key=b"bad/%d" % i)

            received: list[str] = []

            async def drain() -> None:
                async for update in updates:
                    received.append(update.ids[0])

            reader = asyncio.create_task(drain())
            for _ in range(1200):
                if len(received) >= 1000:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)  # more than 1,000 announcements would be a bug: give extras time to show
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        assert sorted(received) == sorted(f"e{i}" for i in range(1000))

        letters = await collect(ns.kafka, ns.kafka.topics.dead_letters, lambda v: len(v) >= 100, timeout=60)
        assert len(letters) == 100
        decoded = [decode(v, DeadLetter) for v in letters]
        assert all(d.reason and d.stage == "embed" and d.source_topic == ns.kafka.topics.interactions for d in decoded)
        assert sorted(base64.b64decode(d.raw_b64) for d in decoded) == sorted(
            INVALID[i % len(INVALID)] for i in range(100)
        )
        assert len({(d.partition, d.offset) for d in decoded}) == 100
        forwarded = await collect(ns.kafka, ns.kafka.topics.embedded, lambda v: len(v) >= 1000, timeout=60)
        assert sorted(decode_with_vector(v, InteractionEvent)[0].event_id for v in forwarded) == sorted(
            f"e{i}" for i in range(1000)
        )
    finally:
        ns.stop_workers()
        print(ns.logs()[-3000:])
