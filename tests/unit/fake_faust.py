"""A stand-in for the parts of a Faust app the session store uses (tables as dicts, the partition signals),
shared by the session-store and session-owner tests."""

from __future__ import annotations

import asyncio


class Signal:
    def __init__(self) -> None:
        self.receivers = []

    def connect(self, fn):
        self.receivers.append(fn)
        return fn

    def send(self) -> None:
        for fn in self.receivers:
            asyncio.run(fn(None, set()))


class FakeApp:
    def __init__(self) -> None:
        self.tables: dict[str, dict] = {}
        self.on_partitions_revoked = Signal()
        self.on_partitions_assigned = Signal()

    def Table(self, name: str, **_: object) -> dict:
        return self.tables.setdefault(name, {})
