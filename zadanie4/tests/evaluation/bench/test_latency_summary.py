"""Percentiles, run summaries, serving.json records/ratios and generator flags against known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zadanie4.evaluation.bench.latency_summary import (
    RUN_KEYS,
    generator_health,
    interference,
    markdown_table,
    percentile,
    run_record,
    serving_ratios,
    summarize,
)


def test_percentile_interpolates_linearly_between_closest_ranks() -> None:
    # given 1..10: rank of q = q/100 * (n - 1)
    values = list(range(1, 11))
    # then p50 sits between 5 and 6, p90 at 9.1, p99 at 9.91, ends are the extremes
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 90) == pytest.approx(9.1)
    assert percentile(values, 99) == pytest.approx(9.91)
    assert percentile(values, 0) == 1 and percentile(values, 100) == 10


def test_percentile_ignores_input_order_and_handles_a_single_value() -> None:
    assert percentile([9.0, 1.0, 5.0], 50) == 5.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_nan_and_out_of_range_q_is_refused() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)


def test_summary_converts_seconds_to_milliseconds_and_counts_errors_in_the_percentiles() -> None:
    # given 100 requests of 1..100 ms, the 5 slowest being timeouts
    latencies_s = np.arange(1, 101) / 1000.0
    # when summarised over a 2-second window
    summary = summarize(latencies_s, errors=5, wall_s=2.0)
    # then percentiles cover every request (errors included) and throughput counts only successes
    assert summary.requests == 100 and summary.errors == 5
    assert summary.achieved_rps == pytest.approx(95 / 2.0)
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p95_ms == pytest.approx(95.05)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.max_ms == pytest.approx(100.0)
    assert summary.mean_ms == pytest.approx(50.5)


def test_summary_of_an_empty_step_has_no_percentiles() -> None:
    summary = summarize([], errors=0, wall_s=1.0)
    assert summary.requests == 0 and summary.achieved_rps == 0.0
    assert summary.p50_ms is None and summary.p99_ms is None


def test_summary_refuses_more_errors_than_requests() -> None:
    with pytest.raises(ValueError):
        summarize([0.001], errors=2, wall_s=1.0)


def test_run_record_has_exactly_the_issue_keys() -> None:
    record = run_record("recommend", 300, summarize([0.002, 0.004], errors=0, wall_s=1.0))
    assert tuple(record) == RUN_KEYS
    assert record["rate_rps"] == 300.0 and isinstance(record["rate_rps"], float)
    assert record["requests"] == 2 and record["p50_ms"] == pytest.approx(3.0)


def test_max_throughput_record_has_no_rate_and_unknown_targets_are_refused() -> None:
    assert run_record("health", None, summarize([0.001], 0, 1.0))["rate_rps"] is None
    with pytest.raises(ValueError, match="unknown target"):
        run_record("redis", 100, summarize([0.001], 0, 1.0))


def _run(target: str, rate: float | None, p99: float | None) -> dict[str, object]:
    return {"target": target, "rate_rps": rate, "p99_ms": p99}


def test_ratios_divide_recommend_p99_by_the_peers_at_the_chosen_rate() -> None:
    runs = [
        _run("health", 100.0, 1.0),
        _run("health", 300.0, 2.0),
        _run("recommend", 300.0, 6.0),
        _run("recommend", None, 50.0),
        _run("feast_feature_server", 300.0, 24.0),
    ]
    assert serving_ratios(runs, 300.0) == {
        "recommend_p99_over_feast_p99": 0.25,
        "recommend_p99_over_health_p99": 3.0,
    }


def test_ratios_are_none_when_a_run_is_missing_or_zero() -> None:
    runs = [_run("recommend", 100.0, 5.0), _run("health", 100.0, 0.0)]
    assert serving_ratios(runs, 100.0) == {
        "recommend_p99_over_feast_p99": None,
        "recommend_p99_over_health_p99": None,
    }


def test_generator_is_flagged_when_it_uses_its_whole_core() -> None:
    health = generator_health(cpu_s=9.5, wall_s=10.0, send_lags_s=[0.0] * 10)
    assert health.saturated and health.cpu_share == 0.95
    assert "95%" in health.reasons[0]


def test_generator_is_flagged_when_it_falls_behind_its_schedule() -> None:
    # given 2 % of the sends 20 ms late (p99 rank 98.01 of 0..99 falls among them)
    lags = [0.0] * 98 + [0.020] * 2
    health = generator_health(cpu_s=1.0, wall_s=10.0, send_lags_s=lags, max_lag_p99_ms=5.0)
    assert health.saturated
    assert health.send_lag_p99_ms == pytest.approx(20.0)
    assert health.send_lag_p50_ms == 0.0
    assert "behind its schedule" in health.reasons[0]


def test_a_relaxed_generator_is_not_flagged_and_a_closed_loop_has_no_lag() -> None:
    assert not generator_health(cpu_s=2.0, wall_s=10.0, send_lags_s=[0.0001] * 50).saturated
    closed = generator_health(cpu_s=2.0, wall_s=10.0, send_lags_s=[])
    assert not closed.saturated and closed.send_lag_p99_ms is None


def test_markdown_table_formats_numbers_and_missing_values() -> None:
    table = markdown_table([{"a": 1500, "b": 2.345, "c": None}], ["a", "b", "c"])
    assert table.splitlines() == ["| a | b | c |", "|---|---|---|", "| 1,500 | 2.35 | – |"]


def test_a_quiet_machine_is_not_noisy() -> None:
    # given 10 s in which the measured processes account for all but 0.5 s of the busy CPU
    quiet = interference(busy_s=12.5, steal_s=0.0, wall_s=10.0, accounted_cpu_s=12.0)
    assert quiet.other_share == 0.05 and not quiet.noisy


def test_other_processes_or_the_hypervisor_make_a_step_noisy() -> None:
    busy = interference(busy_s=16.0, steal_s=0.0, wall_s=10.0, accounted_cpu_s=12.0)
    assert busy.noisy and busy.other_share == 0.4 and "40%" in busy.reasons[0]
    stolen = interference(busy_s=12.0, steal_s=1.0, wall_s=10.0, accounted_cpu_s=12.0)
    assert stolen.noisy and stolen.steal_share == 0.1 and "hypervisor" in stolen.reasons[0]


def test_accounting_more_than_the_machine_measured_is_not_negative_noise() -> None:
    # /proc tick rounding can make the measured processes exceed the machine's busy time slightly
    assert interference(busy_s=11.9, steal_s=0.0, wall_s=10.0, accounted_cpu_s=12.0).other_share == 0.0
