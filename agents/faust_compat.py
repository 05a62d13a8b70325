"""Every use of Faust's private API in one module: the file to revisit on a Faust upgrade (pinned: 0.15.3).

* ``as_current_event``: the context variable Faust reads for a table's partition (no public setter).
* ``FlowControl`` and ``App``: rebalance fixes inside Faust's recovery (see each docstring).
* ``Consumer``: a seek to the committed offsets that also rewinds partitions with none committed yet.
* ``App._on_agent_error`` and ``Consumer._commit_offsets``: an agent that raises crashes the worker (non-zero
  exit, nothing committed after the crash) instead of dying alone.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import EventT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)


@contextmanager
def as_current_event(event: EventT) -> Iterator[None]:
    """Make `event` the current event of this task only, so table reads and writes use its partition.

    Faust writes a table key to the changelog partition and RocksDB of the task's *current event*, which
    ``take_events()`` leaves unset in the agent (faust-streaming#497: tables then refuse writes). Only the context
    variable is set: ``Stream.current_event`` belongs to the take buffer's filler, which runs beside the agent
    and reads it for every record it buffers.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class FlowControl(FlowControlEvent):
    """Faust's flow control, except that resuming a flow that is already running leaves the queues alone.

    `FlowControlEvent.resume()` empties every stream queue. After a rebalance faust resumes the flow to read
    the table changelogs; once they are read it un-pauses the stream partitions, seeks them to the committed
    offsets and calls `resume()` again (faust 0.15.3, `Recovery.on_recovery_completed`). The fetcher is
    already running by then, so records it delivered after that seek and that still wait in an agent's queue
    were dropped: never processed, never acked, never fetched again, and the next commit went past them
    (faust counts the jump in read offsets as a gap, and its head check lets one missing offset through).
    Emptying the queues belongs to the suspended -> running step only: what was queued while suspended is
    stale, and those partitions are sought back to their committed offsets anyway.
    """

    def resume(self) -> None:
        if self.is_active():
            return
        super().resume()


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, except that seeking to the committed offsets also rewinds the stream
    partitions that have no committed offset yet to their beginning.

    Faust drops records it has taken from the consumer when they arrive while the flow is stopped (`getmany`
    discards the batch and seeks to the committed offsets to fetch it again; so does a delivery cut by a
    flow suspension). `App._hold_fetching_until_sought` stops the flow while faust resumes the stream
    partitions after a rebalance, and a fetch already waiting (on the changelogs) sees the resumed
    partitions, since faust hands the consumer thread its set of active partitions by reference: that batch
    is dropped. aiokafka's ``seek_to_committed`` only seeks partitions whose committed offset is above 0, so
    on a partition the group has not committed yet nothing brings the dropped records back: the consumer
    goes on after them, and faust's next commit goes past them (its check for a gap before the first acked
    offset needs a committed offset). A worker assigned a partition with a backlog and no commit lost the
    backlog's first records for good (CI, 2026-12-04: the first 9 records of partition 0, the first 1-3
    events of 6 sessions, never indexed). Without a committed offset the group starts from the beginning
    (``consumer_auto_offset_reset="earliest"``), so that is where this seek goes. Changelog partitions (no
    acks) are left alone: table recovery positions them itself."""

    async def seek_to_committed(self) -> Mapping[TopicPartition, int]:
        return await self.call_thread(
            seek_to_committed_or_beginning, self._ensure_consumer(), self.app.topics.acks_enabled_for
        )


async def seek_to_committed_or_beginning(
    consumer: AIOKafkaConsumer, rewind_topic: Callable[[str], bool]
) -> Mapping[TopicPartition, int | None]:
    """Seek each assigned partition to its committed offset, and those of `rewind_topic` topics that have
    none (or 0) to their beginning; return the committed offsets (None: none), as aiokafka's does."""
    committed: Mapping[TopicPartition, int | None] = await consumer.seek_to_committed()
    fresh = [tp for tp, offset in committed.items() if not offset and rewind_topic(tp.topic)]
    if fresh:
        log.debug("no committed offset yet: seeking %s to the beginning", fresh)
        await consumer.seek_to_beginning(*fresh)
    return committed


class Consumer(faust_aiokafka.Consumer):
    offsets_frozen = False
    """Set once an agent has crashed (`App._on_agent_error`): no offset is committed any more."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _commit_offsets(self, offsets: Mapping[Any, int], start_new_transaction: bool = True) -> bool:
        """Faust's commit (every commit goes through here: the commit timer, a rebalance, the shutdown), except
        after an agent crashed. ``take_events`` acks a batch when its generator is closed, and an agent that
        raised leaves that to garbage collection (the exception's traceback holds the generator meanwhile):
        were it collected before the worker's last commit, the group would move past records that were never
        processed and the restarted worker would skip them. With nothing committed after a crash, it cannot."""
        if self.offsets_frozen:
            log.warning("not committing offsets %s: an agent crashed, its batch is processed again", dict(offsets))
            return False
        return bool(await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction))


class App(faust.App):
    """faust.App with the fixes above: flow control that keeps running queues, fetching held until sought,
    a seek to the committed offsets that rewinds uncommitted partitions too; and an agent's crash is the
    worker's."""

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return FlowControl(loop=self.loop)

    def _new_consumer(self) -> faust_aiokafka.Consumer:
        return Consumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.transport.loop,
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_rebalance_complete.connect(self._hold_fetching_until_sought)

    async def _hold_fetching_until_sought(self, sender: Any, **kwargs: Any) -> None:
        """After table recovery faust resumes the stream partitions *then* seeks them to the committed
        offsets, while the fetcher runs (it read the changelogs): what it delivered in between is fetched
        again after the seek and processed twice (a worker started on a backlog of 10 records announced 9 of
        them twice). faust sends this signal just before; stopping the consumer's flow here holds the
        fetcher until faust resumes the flow right after its seek. Records it had fetched but not delivered
        are dropped by faust and fetched again from the committed offsets (from the beginning of a partition
        with none: see `ConsumerThread`), so nothing is skipped."""
        self.consumer.stop_flow()

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        """An agent raised. Faust would commit what is acked and let the agent's supervisor restart the actor
        around a task that has already ended: the stage stops consuming while the worker stays up, keeps its
        partitions and looks healthy. Crash the app instead, committing nothing more (see
        `Consumer._commit_offsets`): mode marks the worker crashed, the worker stops, and after its shutdown
        re-raises the exception, so the process exits non-zero (1) and an orchestrator restarts it from the
        committed offsets (the failed batch is processed again)."""
        consumer = self.consumer
        if isinstance(consumer, Consumer):
            consumer.offsets_frozen = True
        log.critical(
            "agent %s crashed (%s: %s): stopping the worker with a non-zero exit code",
            getattr(agent, "name", agent),
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        await self.crash(exc)
