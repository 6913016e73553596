"""test_summary.json from locust's stats CSV, locust's run-time syntax, and the load-test ids."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest

from zadanie4.evaluation.bench.load_test_ids import COLD_ID_OFFSET, LoadTestIds, ids_from_events
from zadanie4.evaluation.bench.loadtest_runner import parse_run_time, summary_from_locust_rows

# Header and rows as locust 2.x writes them (--csv <prefix> -> <prefix>_stats.csv).
STATS_CSV = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
GET,GET /recommend [warm],600,3,4,5.2,2.1,88.4,900.0,10.0,0.05,4,5,5,6,7,9,12,15,80,88,88
POST,POST /feedback,200,0,3,3.4,1.9,20.0,120.0,3.33,0.0,3,3,4,4,5,6,9,11,20,20,20
GET,GET /recommend [cold],100,0,2,2.5,1.0,9.0,700.0,1.67,0.0,2,2,3,3,3,4,5,N/A,N/A,N/A,9
,Aggregated,900,3,4,4.6,1.0,88.4,700.0,15.0,0.05,4,4,5,5,6,8,11,14,80,88,88
"""


def _rows() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(STATS_CSV)))


def test_summary_has_totals_and_every_request_type() -> None:
    summary = summary_from_locust_rows(_rows())
    assert summary["requests"] == 900 and summary["failures"] == 3 and summary["rps"] == 15.0
    assert set(summary["per_request_type"]) == {"GET /recommend [warm]", "POST /feedback", "GET /recommend [cold]"}
    warm = summary["per_request_type"]["GET /recommend [warm]"]
    assert warm == {
        "method": "GET",
        "requests": 600,
        "failures": 3,
        "failure_ratio": 0.005,
        "rps": 10.0,
        "p50_ms": 4.0,
        "p95_ms": 9.0,
        "p99_ms": 15.0,
        "max_ms": 88.4,
        "avg_ms": 5.2,
    }
    assert summary["overall"]["p99_ms"] == 14.0 and "method" not in summary["overall"]


def test_percentiles_locust_could_not_compute_are_null() -> None:
    cold = summary_from_locust_rows(_rows())["per_request_type"]["GET /recommend [cold]"]
    assert cold["p99_ms"] is None and cold["p95_ms"] == 4.0
    json.dumps(cold)  # JSON-ready


def test_stats_without_the_aggregated_row_are_refused() -> None:
    with pytest.raises(ValueError, match="Aggregated"):
        summary_from_locust_rows(_rows()[:-1])


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("60s", 60), ("2m", 120), ("1h30m", 5400), ("1m5s", 65)])
def test_run_time_accepts_locust_syntax(text: str, seconds: float) -> None:
    assert parse_run_time(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "m"])
def test_run_time_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_run_time(text)


def _events() -> pd.DataFrame:
    # user 1: 8 events, user 2: 6, user 3: 2; products 10/11 in category 100, 20 in category 200
    rows = [(1, 10, 100)] * 5 + [(1, 11, 100)] * 3 + [(2, 20, 200)] * 6 + [(3, 11, 100)] * 2
    return pd.DataFrame(rows, columns=["user_id", "product_id", "category_id"])


def test_ids_separate_warm_users_from_never_seen_ones() -> None:
    ids = ids_from_events(_events(), n_warm=10, n_cold=5, warm_min_events=6, seed=1)
    assert sorted(ids.warm_user_ids) == [1, 2]
    assert len(ids.cold_user_ids) == 5 and len(set(ids.cold_user_ids)) == 5
    assert min(ids.cold_user_ids) >= 3 + COLD_ID_OFFSET
    assert not set(ids.cold_user_ids) & {1, 2, 3}


def test_products_are_ordered_by_views_and_grouped_by_category() -> None:
    ids = ids_from_events(_events(), warm_min_events=6)
    assert ids.product_ids == [20, 10, 11]
    assert ids.category_products == {"100": [10, 11], "200": [20]}


def test_ids_are_reproducible_and_survive_json() -> None:
    first = ids_from_events(_events(), n_cold=3, warm_min_events=1, seed=7)
    assert ids_from_events(_events(), n_cold=3, warm_min_events=1, seed=7) == first
    assert LoadTestIds.from_json(first.to_json()) == first


def test_events_without_warm_users_cannot_drive_a_load_test() -> None:
    with pytest.raises(ValueError, match="no user has 50 events"):
        ids_from_events(_events(), warm_min_events=50)
