"""Percentiles and run summaries of latency samples (pure: no I/O, no clocks).

Used by the open-loop benchmark (``make bench``), the load test (``make loadtest``) and their tests.
Latencies are in seconds on input and milliseconds in every output, rounded to microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# Targets of artifacts/bench/serving.json, in the order of the issue.
TARGETS = ("health", "recommend", "feast_feature_server")
RUN_KEYS = ("target", "rate_rps", "achieved_rps", "p50_ms", "p95_ms", "p99_ms", "errors", "requests")


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks (numpy's default).

    NaN for an empty input; raises ValueError for q outside 0..100.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return math.nan
    return float(np.percentile(array, q))


@dataclass(frozen=True)
class LatencySummary:
    """One measured step: counts, achieved throughput and latency percentiles in milliseconds.

    ``requests`` counts every request that was scheduled and finished (ok or not), ``errors`` those
    that failed (non-2xx, connection error or abandoned at the timeout). Percentiles are over all of
    them: an abandoned request counts with the time it was waited for, so overload shows up in p99
    instead of disappearing from it. ``achieved_rps`` = successful responses per second of the step.
    """

    requests: int
    errors: int
    achieved_rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def _ms(value_s: float) -> float | None:
    return None if math.isnan(value_s) else round(value_s * 1000.0, 3)


def summarize(latencies_s: Sequence[float] | np.ndarray, errors: int, wall_s: float) -> LatencySummary:
    """Summary of one step from its per-request latencies (seconds), error count and duration (seconds).

    ``wall_s`` is the length of the sending window (the rate's schedule, or the closed loop's run time).
    """
    if errors < 0:
        raise ValueError("errors must be >= 0")
    array = np.asarray(latencies_s, dtype=np.float64)
    if errors > array.size:
        raise ValueError(f"{errors} errors but only {array.size} requests")
    ok = array.size - errors
    achieved = ok / wall_s if wall_s > 0 else 0.0
    if array.size == 0:
        return LatencySummary(0, 0, 0.0, None, None, None, None, None)
    p50, p95, p99 = np.percentile(array, [50.0, 95.0, 99.0])
    return LatencySummary(
        requests=int(array.size),
        errors=int(errors),
        achieved_rps=round(achieved, 2),
        p50_ms=_ms(float(p50)),
        p95_ms=_ms(float(p95)),
        p99_ms=_ms(float(p99)),
        max_ms=_ms(float(array.max())),
        mean_ms=_ms(float(array.mean())),
    )


def run_record(target: str, rate_rps: float | None, summary: LatencySummary) -> dict[str, object]:
    """One entry of ``serving.json``'s ``runs`` with exactly the issue's keys (``rate_rps`` None = max step)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
    return {
        "target": target,
        "rate_rps": None if rate_rps is None else float(rate_rps),
        "achieved_rps": summary.achieved_rps,
        "p50_ms": summary.p50_ms,
        "p95_ms": summary.p95_ms,
        "p99_ms": summary.p99_ms,
        "errors": summary.errors,
        "requests": summary.requests,
    }


def _p99_at(runs: Iterable[Mapping[str, object]], target: str, rate_rps: float) -> float | None:
    for run in runs:
        if run["target"] == target and run["rate_rps"] is not None and float(run["rate_rps"]) == float(rate_rps):  # type: ignore[arg-type]
            value = run["p99_ms"]
            return None if value is None else float(value)  # type: ignore[arg-type]
    return None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, 4)


def serving_ratios(runs: Sequence[Mapping[str, object]], rate_rps: float) -> dict[str, float | None]:
    """``recommend`` p99 over ``feast_feature_server`` p99 and over ``health`` p99, all at ``rate_rps``.

    None when a run at that rate is missing or its p99 is not positive.
    """
    recommend = _p99_at(runs, "recommend", rate_rps)
    return {
        "recommend_p99_over_feast_p99": _ratio(recommend, _p99_at(runs, "feast_feature_server", rate_rps)),
        "recommend_p99_over_health_p99": _ratio(recommend, _p99_at(runs, "health", rate_rps)),
    }


@dataclass(frozen=True)
class GeneratorHealth:
    """How hard the load generator itself worked during a step (to tell its limits from the server's).

    ``cpu_share`` = generator process CPU seconds / wall seconds (1.0 = one core fully busy);
    ``send_lag_p99_ms`` = p99 of (actual send time - scheduled send time) in an open-loop step.
    """

    cpu_share: float
    send_lag_p50_ms: float | None
    send_lag_p99_ms: float | None
    saturated: bool
    reasons: tuple[str, ...]


def generator_health(
    cpu_s: float,
    wall_s: float,
    send_lags_s: Sequence[float] | np.ndarray,
    *,
    max_cpu_share: float = 0.85,
    max_lag_p99_ms: float = 5.0,
) -> GeneratorHealth:
    """Flag a step whose numbers may describe the generator rather than the server.

    Saturated when the generator used more than ``max_cpu_share`` of its core, or when its p99
    send lag (open loop only; empty for a closed loop) exceeds ``max_lag_p99_ms``: it could not send
    on schedule, so part of the measured latency is its own.
    """
    share = cpu_s / wall_s if wall_s > 0 else 0.0
    lags = np.asarray(send_lags_s, dtype=np.float64)
    lag50 = _ms(percentile(lags, 50.0)) if lags.size else None
    lag99 = _ms(percentile(lags, 99.0)) if lags.size else None
    reasons = []
    if share > max_cpu_share:
        reasons.append(f"load generator used {share:.0%} of its core (limit {max_cpu_share:.0%})")
    if lag99 is not None and lag99 > max_lag_p99_ms:
        reasons.append(f"send lag p99 {lag99:.1f} ms > {max_lag_p99_ms:g} ms (generator behind its schedule)")
    return GeneratorHealth(round(share, 3), lag50, lag99, bool(reasons), tuple(reasons))


@dataclass(frozen=True)
class Interference:
    """CPU used on the machine during a step by processes other than the measured ones, in cores.

    ``other_share`` = (busy CPU of all cores - CPU of the server, the generator and Redis) / wall;
    ``steal_share`` = CPU the hypervisor gave to other guests / wall. Either makes a step noisy.
    """

    other_share: float
    steal_share: float
    noisy: bool
    reasons: tuple[str, ...]


def interference(
    busy_s: float,
    steal_s: float,
    wall_s: float,
    accounted_cpu_s: float,
    *,
    max_other_share: float = 0.10,
    max_steal_share: float = 0.05,
) -> Interference:
    """Was the machine quiet during a step? ``busy_s``/``steal_s`` summed over all cores, from /proc/stat."""
    if wall_s <= 0:
        return Interference(0.0, 0.0, False, ())
    other = max(busy_s - accounted_cpu_s, 0.0) / wall_s
    steal = max(steal_s, 0.0) / wall_s
    reasons = []
    if other > max_other_share:
        reasons.append(f"other processes used {other:.0%} of a core")
    if steal > max_steal_share:
        reasons.append(f"the hypervisor stole {steal:.0%} of a core")
    return Interference(round(other, 3), round(steal, 3), bool(reasons), tuple(reasons))


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """A GitHub markdown table of ``rows`` restricted to ``columns`` (None shown as an en dash)."""

    def cell(value: object) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
