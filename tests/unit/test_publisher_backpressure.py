"""Publisher back-pressure (streams/client.py): a bounded buffer of unacknowledged events that makes
publishing wait while the broker does not answer, counted in ``stats``; a timeout or a refusal raises with
every event not acknowledged; nothing is dropped. The producer is a fake whose acknowledgements the test
gives."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from memstream.streams import client
from memstream.streams.client import Publisher, PublishError, PublishTimeoutError
from memstream.streams.contracts import InteractionEvent
from memstream.streams.settings import KafkaSettings


class FakeProducer:
    """Records sends; each returns a future the test settles. `refuse_room` sends first fail as aiokafka's
    do when a partition's batch stays full for its request timeout."""

    def __init__(self, auto_ack: int = 0, refuse_room: int = 0) -> None:
        self.futures: list[asyncio.Future[object]] = []
        self.auto_ack, self.refuse_room = auto_ack, refuse_room

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[object]:
        if self.refuse_room:
            self.refuse_room -= 1
            raise KafkaTimeoutError()
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if len(self.futures) < self.auto_ack:
            future.set_result(object())
        self.futures.append(future)
        return future

    def ack(self, upto: int) -> None:
        for future in self.futures[:upto]:
            if not future.done():
                future.set_result(object())


def _events(n: int) -> list[InteractionEvent]:
    return [
        InteractionEvent(event_id=f"e{i}", tenant_id="t", user_id="u", session_id="s", ts=1.0 + i, text="hi")
        for i in range(n)
    ]


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch):
    """A Publisher over a FakeProducer."""

    def publisher(producer: FakeProducer, **options: object) -> Publisher:
        monkeypatch.setattr(client, "AIOKafkaProducer", lambda **_kwargs: producer)
        return Publisher(KafkaSettings(bootstrap="127.0.0.1:1"), create_topics=False, **options)  # type: ignore[arg-type]

    return publisher


async def test_a_full_buffer_blocks_publishing_and_is_counted_until_the_broker_acknowledges(make) -> None:
    producer = FakeProducer()
    pub = make(producer, max_pending=3, timeout_s=None)
    task = asyncio.create_task(pub.publish_many(_events(5)))
    await asyncio.sleep(0.2)
    assert not task.done() and len(producer.futures) == 3  # no room for the 4th
    assert (pub.stats.sent, pub.stats.pending, pub.stats.acknowledged) == (3, 3, 0)
    assert pub.stats.blocked and pub.stats.waits == 1  # reported while it lasts
    producer.ack(2)
    await asyncio.sleep(0.05)
    assert len(producer.futures) == 5 and not task.done()
    assert not pub.stats.blocked and pub.stats.waits == 1 and pub.stats.waited_s >= 0.2  # the 4th waited
    producer.ack(5)
    assert await task == 5
    assert (pub.stats.sent, pub.stats.acknowledged, pub.stats.pending, pub.stats.failed) == (5, 5, 0, 0)


async def test_no_progress_for_the_timeout_raises_with_every_event_not_acknowledged(make) -> None:
    producer = FakeProducer(auto_ack=1)
    pub = make(producer, max_pending=2, timeout_s=0.2)
    events = _events(4)
    with pytest.raises(PublishTimeoutError) as caught:
        await pub.publish_many(events)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.unacknowledged == events[1:]  # the first was acknowledged; the rest is handed back
    assert (pub.stats.sent, pub.stats.pending) == (3, 2)  # the 4th found no room; 2 are with the producer
    assert pub.stats.waits == 1
    producer.ack(3)  # the producer may still deliver what it holds
    await asyncio.sleep(0)
    assert (pub.stats.acknowledged, pub.stats.pending) == (3, 0)


async def test_a_refused_event_raises_publish_error_with_the_broker_error(make) -> None:
    producer = FakeProducer()
    pub = make(producer, timeout_s=1.0)
    events = _events(3)
    task = asyncio.create_task(pub.publish_many(events))
    await asyncio.sleep(0.05)
    producer.futures[0].set_result(object())
    producer.futures[1].set_exception(MessageSizeTooLargeError())
    producer.futures[2].set_result(object())
    with pytest.raises(PublishError) as caught:
        await task
    assert isinstance(caught.value.__cause__, MessageSizeTooLargeError)
    assert caught.value.unacknowledged == [events[1]]
    assert (pub.stats.acknowledged, pub.stats.failed, pub.stats.pending) == (2, 1, 0)


async def test_the_producers_own_wait_for_room_is_retried_until_our_timeout(make) -> None:
    producer = FakeProducer(auto_ack=10, refuse_room=2)  # aiokafka gave up twice on a full batch
    pub = make(producer, timeout_s=5.0)
    assert await pub.publish_many(_events(2)) == 2
    assert pub.stats.acknowledged == 2
