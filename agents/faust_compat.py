"""Every use of Faust's private API in one module: the file to revisit on a Faust upgrade (pinned: 0.15.3).

* ``as_current_event``: the context variable Faust reads for a table's partition (no public setter).
* ``FlowControl`` and ``App``: rebalance fixes inside Faust's recovery (see each docstring).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import EventT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent


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


class App(faust.App):
    """faust.App with the two fixes above: flow control that keeps running queues, fetching held until sought."""

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return FlowControl(loop=self.loop)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_rebalance_complete.connect(self._hold_fetching_until_sought)

    async def _hold_fetching_until_sought(self, sender: Any, **kwargs: Any) -> None:
        """After table recovery faust resumes the stream partitions *then* seeks them to the committed
        offsets, while the fetcher runs (it read the changelogs): what it delivered in between is fetched
        again after the seek and processed twice (a worker started on a backlog of 10 records announced 9 of
        them twice). faust sends this signal just before; stopping the consumer's flow here holds the
        fetcher until faust resumes the flow right after its seek. Records it had fetched but not delivered
        are dropped by faust and fetched again from the committed offsets, so nothing is skipped."""
        self.consumer.stop_flow()
