"""How loaded the machine was while a benchmark measured, and the statistics a benchmark reports with it.

A throughput ratio between two engines is only worth stating when nothing else competed for the cores
while each was measured: a busy neighbour hurts one engine more than another (PyTorch suffers more than
ONNX Runtime), so a loaded machine makes a ratio that a quiet one does not reproduce. ``sample()`` before
and after a timed turn gives, through ``other_load``, the share of all cores that OTHER processes used
during the turn: the busy time ``/proc/stat`` counts for the whole machine, less this process's own CPU
time (``os.times``, all its threads), over the machine's total (busy + idle) time in the same interval.

Everything here except ``sample`` is pure, so the rules are unit-tested on made-up snapshots.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

PROC_STAT = "/proc/stat"

# Fields of /proc/stat's aggregate "cpu" line, in order (see proc(5)). guest and guest_nice are already
# counted in user and nice, so they are not added again; iowait is idle time.
_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
_IDLE = frozenset({"idle", "iowait"})
_COUNTED = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class CpuSample:
    """One snapshot: machine-wide busy and total CPU seconds (all cores, since boot), this process's own CPU
    seconds, and a monotonic wall clock."""

    busy_s: float
    total_s: float
    own_s: float
    wall_s: float


def parse_proc_stat(text: str, ticks_per_s: float) -> tuple[float, float]:
    """(busy seconds, total seconds) summed over all cores, from the text of ``/proc/stat``."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = dict(zip(_FIELDS, (int(v) for v in parts[1:]), strict=False))
            total = sum(values.get(name, 0) for name in _COUNTED)
            busy = sum(values.get(name, 0) for name in _COUNTED if name not in _IDLE)
            return busy / ticks_per_s, total / ticks_per_s
    raise ValueError("no aggregate 'cpu' line in /proc/stat text")


def sample() -> CpuSample:
    """A snapshot now (Linux: reads /proc/stat)."""
    with open(PROC_STAT) as f:
        text = f.read()
    busy, total = parse_proc_stat(text, os.sysconf("SC_CLK_TCK"))
    own = os.times()
    return CpuSample(busy_s=busy, total_s=total, own_s=own.user + own.system, wall_s=time.monotonic())


def other_load(before: CpuSample, after: CpuSample) -> float:
    """Share of all cores (0..1) that processes other than this one kept busy between two snapshots.

    Clamped to [0, 1]: /proc/stat and ``os.times`` count in clock ticks, so a short interval can come out a
    tick below zero.
    """
    total = after.total_s - before.total_s
    if total <= 0:
        return 0.0
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return min(1.0, max(0.0, others / total))


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """Median, min and max of ``values`` (rounded), what the benchmark reports for each measurement."""
    if not values:
        raise ValueError("no values")
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-repetition ratios: the i-th rate of one engine over the i-th rate of another (same repetition)."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} rates against {len(denominator)}: repetitions must pair up")
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def is_quiet(loads: Sequence[float], max_other_load: float) -> bool:
    """A measurement is quiet when no turn behind it saw other processes use more than ``max_other_load`` of
    the cores (a ratio's turns are both engines' turns in every repetition)."""
    return all(load <= max_other_load for load in loads)


def ratio_report(
    numerator: Sequence[float],
    denominator: Sequence[float],
    loads: Sequence[float],
    max_other_load: float,
) -> dict[str, float | bool | int]:
    """A ratio as reported: median and spread over repetitions, the largest other-process load among the
    turns behind it, and whether it is quiet (``quiet: false`` = measured under load, not to be stated)."""
    per_rep = ratios(numerator, denominator)
    return {
        **spread(per_rep, digits=2),
        "repetitions": len(per_rep),
        "other_load_max": round(max(loads), 3) if loads else 0.0,
        "quiet": is_quiet(loads, max_other_load),
    }
