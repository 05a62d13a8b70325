"""Log hygiene for workers: a burst of one library message (e.g. aiokafka's "Unable connect to node" while a
broker is down, logged for every request) is shown once per window with a count, not thousands of times.
memstream's own messages (its retries back off already, and each attempt is worth a line) always pass."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

OWN_LOGGERS = ("memstream", "bench")


class RepeatFilter(logging.Filter):
    """Let the first record of each (logger, level, message template) through, drop its repeats for
    ``window_s`` seconds, then let the next one through with ``(N similar suppressed)`` appended. Records
    of the loggers under ``exempt`` (memstream's own) always pass."""

    def __init__(
        self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic, exempt: tuple[str, ...] = OWN_LOGGERS
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self.exempt = exempt
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # one decision per record: the same filter sits on every handler of the root logger
        decided = getattr(record, "_memstream_repeat", None)
        if decided is None:
            decided = record._memstream_repeat = self._decide(record)  # type: ignore[attr-defined]
        return decided

    def _decide(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] in self.exempt:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.msg} ({last[1]} similar suppressed in the last {now - last[0]:.0f}s)"
        self._seen[key] = (now, 0)
        if len(self._seen) > 4096:  # bounded: forget the oldest templates
            for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:1024]:
                del self._seen[old]
        return True


def install_repeat_filter(logger: logging.Logger, window_s: float = 10.0) -> RepeatFilter:
    """Put one `RepeatFilter` on every handler of ``logger`` (the root logger, once it is configured)."""
    repeat = RepeatFilter(window_s)
    for handler in logger.handlers:
        handler.addFilter(repeat)
    return repeat
