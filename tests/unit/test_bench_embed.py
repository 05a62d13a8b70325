"""The embedder benchmark's pure parts: other-process load from two /proc/stat snapshots, per-repetition
ratios with their median and spread, the quiet flag, and the interleaved turn order. Nothing is timed."""

from __future__ import annotations

import pytest

from bench import cpu_load
from bench.cpu_load import CpuSample

# /proc/stat as Linux writes it (2 cores; clock ticks of 1/100 s).
STAT_BEFORE = """cpu  1000 50 400 8000 100 10 20 5 0 0
cpu0 500 25 200 4000 50 5 10 3 0 0
cpu1 500 25 200 4000 50 5 10 2 0 0
intr 12345 0 0
ctxt 6789
"""
# 2 s later on 2 cores = 400 ticks: 300 busy (user 250, system 40, softirq 10), 100 idle.
STAT_AFTER = """cpu  1250 50 440 8090 110 10 30 5 0 0
cpu0 625 25 220 4045 55 5 15 3 0 0
cpu1 625 25 220 4045 55 5 15 2 0 0
intr 12999 0 0
"""


def test_parse_proc_stat_sums_busy_and_total_over_all_cores() -> None:
    busy, total = cpu_load.parse_proc_stat(STAT_BEFORE, ticks_per_s=100)
    assert busy == pytest.approx((1000 + 50 + 400 + 10 + 20 + 5) / 100)
    assert total == pytest.approx((1000 + 50 + 400 + 8000 + 100 + 10 + 20 + 5) / 100)


def test_parse_proc_stat_does_not_count_guest_time_twice_and_needs_the_cpu_line() -> None:
    # guest (9th field) is already inside user: adding it must not change the figures.
    with_guest = "cpu  1000 50 400 8000 100 10 20 5 300 7\n"
    assert cpu_load.parse_proc_stat(with_guest, 100) == cpu_load.parse_proc_stat(STAT_BEFORE, 100)
    # Old kernels write fewer fields.
    assert cpu_load.parse_proc_stat("cpu 10 0 10 80\n", 100) == pytest.approx((0.2, 1.0))
    with pytest.raises(ValueError):
        cpu_load.parse_proc_stat("cpu0 1 2 3 4\n", 100)


def _samples(own_before: float, own_after: float) -> tuple[CpuSample, CpuSample]:
    b0, t0 = cpu_load.parse_proc_stat(STAT_BEFORE, 100)
    b1, t1 = cpu_load.parse_proc_stat(STAT_AFTER, 100)
    return (
        CpuSample(busy_s=b0, total_s=t0, own_s=own_before, wall_s=10.0),
        CpuSample(busy_s=b1, total_s=t1, own_s=own_after, wall_s=12.0),
    )


def test_other_load_is_the_busy_time_this_process_did_not_use_over_all_cores() -> None:
    # 3.0 s busy of 4.0 s of core time; this process used 2.6 s of it: others used 0.4 / 4.0 = 10 %.
    before, after = _samples(5.0, 7.6)
    assert cpu_load.other_load(before, after) == pytest.approx(0.10)
    # This process alone kept the cores busy: nobody else loaded the machine.
    before, after = _samples(5.0, 8.0)
    assert cpu_load.other_load(before, after) == pytest.approx(0.0)
    # This process idle: all 3.0 s busy are others'.
    before, after = _samples(5.0, 5.0)
    assert cpu_load.other_load(before, after) == pytest.approx(0.75)


def test_other_load_is_clamped_and_safe_on_an_empty_interval() -> None:
    before, after = _samples(5.0, 8.05)  # own time a tick above the machine's busy time
    assert cpu_load.other_load(before, after) == 0.0
    assert cpu_load.other_load(before, before) == 0.0


def test_ratios_pair_up_repetitions_and_report_median_and_spread() -> None:
    fp32 = [200.0, 150.0, 210.0, 190.0, 205.0]
    anchor = [100.0, 100.0, 140.0, 100.0, 100.0]
    assert cpu_load.ratios(fp32, anchor) == pytest.approx([2.0, 1.5, 1.5, 1.9, 2.05])
    report = cpu_load.ratio_report(fp32, anchor, loads=[0.01] * 10, max_other_load=0.1)
    assert report == {"median": 1.9, "min": 1.5, "max": 2.05, "repetitions": 5, "other_load_max": 0.01, "quiet": True}
    # The median of per-repetition ratios, not the ratio of medians (200 / 100 = 2.0 here).
    assert report["median"] != pytest.approx(2.0)
    with pytest.raises(ValueError):
        cpu_load.ratios([1.0, 2.0], [1.0])


def test_spread_of_an_even_count_and_of_nothing() -> None:
    assert cpu_load.spread([1.0, 4.0, 2.0, 3.0]) == {"median": 2.5, "min": 1.0, "max": 4.0}
    with pytest.raises(ValueError):
        cpu_load.spread([])


def test_a_ratio_is_flagged_when_any_turn_behind_it_exceeded_the_threshold() -> None:
    assert cpu_load.is_quiet([0.0, 0.05, 0.1], max_other_load=0.1)  # at the threshold is still quiet
    assert not cpu_load.is_quiet([0.0, 0.05, 0.11], max_other_load=0.1)
    flagged = cpu_load.ratio_report([2.0, 2.0], [1.0, 1.0], loads=[0.02, 0.4, 0.03, 0.02], max_other_load=0.1)
    assert flagged["quiet"] is False and flagged["other_load_max"] == 0.4 and flagged["median"] == 2.0


def test_summarise_builds_the_per_batch_tables_with_loads_and_flags() -> None:
    from bench.embed import summarise

    rates = {
        32: {"anchor": [100.0, 120.0, 110.0], "fp32": [200.0, 180.0, 220.0], "int8": [300.0, 300.0, 330.0]},
    }
    loads = {32: {"anchor": [0.0, 0.02, 0.01], "fp32": [0.01, 0.3, 0.0], "int8": [0.0, 0.01, 0.02]}}
    row = summarise(rates, loads, max_other_load=0.1)["32"]
    assert row["anchor"]["per_s"] == {"median": 110.0, "min": 100.0, "max": 120.0}
    assert row["fp32"]["other_load"] == {"median": 0.01, "max": 0.3, "min": 0.0}
    assert set(row["ratios"]) == {"fp32/anchor", "int8/anchor", "int8/fp32"}
    assert row["ratios"]["fp32/anchor"]["quiet"] is False  # fp32's second turn was loaded
    assert row["ratios"]["int8/anchor"]["quiet"] is True
    # Per repetition 300/100, 300/120, 330/110 = 3.0, 2.5, 3.0.
    assert {k: row["ratios"]["int8/anchor"][k] for k in ("median", "min", "max")} == {
        "median": 3.0,
        "min": 2.5,
        "max": 3.0,
    }
    assert row["ratios"]["int8/fp32"]["quiet"] is False


def test_summarise_without_the_anchor_reports_int8_over_fp32_only() -> None:
    from bench.embed import summarise

    row = summarise({1: {"fp32": [100.0], "int8": [150.0]}}, {1: {"fp32": [0.0], "int8": [0.0]}}, 0.1)["1"]
    assert list(row["ratios"]) == ["int8/fp32"] and row["ratios"]["int8/fp32"]["median"] == 1.5


def test_turn_order_rotates_so_each_engine_takes_each_place_equally_often() -> None:
    from bench.embed import turn_order

    engines = ["anchor", "fp32", "int8"]
    orders = [turn_order(engines, rep, 0) for rep in range(3)]
    assert orders == [["anchor", "fp32", "int8"], ["fp32", "int8", "anchor"], ["int8", "anchor", "fp32"]]
    for place in range(3):
        assert sorted(order[place] for order in orders) == engines
    assert turn_order(engines, 0, 1) == orders[1]  # batch sizes start at different engines
    assert turn_order([], 4, 2) == []
