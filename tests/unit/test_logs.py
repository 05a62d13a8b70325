"""Repeated log records are shown once per window, with a count."""

from __future__ import annotations

import logging

from memstream.agents.logs import RepeatFilter, install_repeat_filter


def record(msg: str, name: str = "aiokafka", level: int = logging.ERROR, args=()) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_burst_is_shown_once_then_counted() -> None:
    now = [0.0]
    f = RepeatFilter(window_s=10.0, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    shown = [f.filter(record(template, args=(1, f"attempt {i}"))) for i in range(1000)]
    assert shown.count(True) == 1 and shown[0]
    assert f.filter(record("another message"))  # other templates are not affected
    assert f.filter(record(template, name="faust"))  # nor the same text from another logger
    now[0] = 10.5
    again = record(template, args=(1, "x"))
    assert f.filter(again) and "999 similar suppressed" in again.getMessage()
    assert not f.filter(record(template, args=(1, "y")))


def test_memstreams_own_messages_always_pass() -> None:
    f = RepeatFilter(window_s=10.0, clock=lambda: 0.0)
    retry = "%s failed (attempt %d: %s); retrying in %.1fs"
    assert all(
        f.filter(record(retry, name="memstream.agents.retry", level=logging.WARNING, args=("w", i, "x", 0.2)))
        for i in range(5)
    )


def test_a_record_reaches_every_handler_it_is_shown_on() -> None:
    logger = logging.getLogger("memstream-test-two-handlers")
    logger.propagate = False
    seen: list[list[str]] = [[], []]

    class Collect(logging.Handler):
        def __init__(self, into: list[str]) -> None:
            super().__init__()
            self.into = into

        def emit(self, record: logging.LogRecord) -> None:
            self.into.append(record.getMessage())

    for into in seen:
        logger.addHandler(Collect(into))
    install_repeat_filter(logger)
    for _ in range(3):
        logger.error("Unable connect to node %s", 1)
    assert seen[0] == seen[1] == ["Unable connect to node 1"]
