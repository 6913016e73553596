"""``make report``: RESULTS.md from the JSON reports, shaped exactly as their writers write them (made by the
writers' own functions where that is cheap), with the figures, verdicts and stamps they hold."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from zadanie1.model_comparison import CLASSIFICATION_COLUMNS, comparison_records, ranking_columns
from zadanie1.ranking_metrics import RankingScores
from zadanie2 import consistency_check
from zadanie2.consistency_check import ConsistencyResult, write_result
from zadanie4.evaluation import results_report
from zadanie4.evaluation.ab.report import build_report, write_json
from zadanie4.evaluation.ab.runner import targets
from zadanie4.evaluation.ab.simulation import ArmCounts, ExperimentSummary, NewProductStats
from zadanie4.evaluation.bench.latency_summary import run_record, serving_ratios, summarize
from zadanie4.evaluation.bench.loadtest_runner import summary_from_locust_rows
from zadanie4.evaluation.bench.scaling_benchmark import scaling_markdown
from zadanie4.evaluation.reliability import report as reliability_report
from zadanie4.evaluation.reliability.report import ScenarioResult, write_report
from zadanie4.evaluation.results_report import load_reports, main, render_results, write_results

STAMP = {"commit": "1a2b3c4", "measured_at": "2026-12-06T03:52:00Z"}
OTHER_STAMP = {"commit": "9f8e7d6+dirty", "measured_at": "2026-12-05T21:10:00Z"}


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = tmp_path / "artifacts"
    folder.mkdir()
    return folder


@pytest.fixture(autouse=True)
def _inside_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from tmp_path, so the document shows the reports' paths as artifacts/..."""
    monkeypatch.chdir(tmp_path)


def _write(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    return path


def _render(artifacts: Path) -> str:
    return render_results(load_reports(artifacts))


def _row(markdown: str, starts_with: str) -> str:
    """The one table row of ``markdown`` whose first cell starts with ``starts_with``."""
    rows = [line for line in markdown.splitlines() if line.startswith(f"| {starts_with}")]
    assert len(rows) == 1, (starts_with, rows)
    return rows[0]


def _header(markdown: str, title: str) -> str:
    heads = [line for line in markdown.splitlines() if line.startswith(f"## {title}")]
    assert len(heads) == 1, (title, heads)
    return heads[0]


# --- fixtures shaped like the writers' output ---------------------------------------------------------


def _scores(precision: float, *, k: int = 10) -> dict[str, float]:
    return RankingScores(k=k, n_users=0, precision=precision, hitrate=0.5, ndcg=0.25, map=0.1, coverage=0.3).as_dict()


def write_offline(
    artifacts: Path, model: float, popularity: float, *, cold: tuple[float, float] = (0.07, 0.07)
) -> None:
    """offline_eval.json as ``evaluate_offline`` builds it, and evaluation_details.json with the CLI's stamp."""
    segment = {"n_users": 900, "model": _scores(model), "popularity": _scores(popularity), "random": _scores(0.004)}
    payload = {
        "k": 10,
        "cutoff": "2026-10-22T00:00:00+00:00",
        "n_train_events": 150_000,
        "n_test_events": 38_251,
        "segments": {
            "all": {**segment, "n_users": 1000},
            "cold_users": {
                "n_users": 100,
                "model": _scores(cold[0]),
                "popularity": _scores(cold[1]),
                "random": _scores(0.003),
            },
            "warm_users": segment,
        },
        "lift_precision_at_10_vs_popularity": (model - popularity) / popularity,
    }
    _write(artifacts / "evaluate" / "offline_eval.json", payload)
    _write(
        artifacts / "evaluate" / "evaluation_details.json",
        {"cutoff": payload["cutoff"], "user_stages": {"cold": 100, "light": 50, "warm": 850}, "run": STAMP},
    )


def write_ab(artifacts: Path, control: tuple[int, int], treatment: tuple[int, int], *, first_day: int = 540) -> dict:
    """report.json from ``build_report`` (the writer's own function) and details.json with the stamp."""

    def arm(clicks_impressions: tuple[int, int], users: int) -> ArmCounts:
        clicks, impressions = clicks_impressions
        return ArmCounts(users=users, impressions=impressions, clicks=clicks, carts=0, purchases=0)

    arms = {"control": arm(control, 750), "treatment": arm(treatment, 750)}
    cold = {"control": arm((300, 10_000), 200), "treatment": arm((310, 10_000), 200)}
    summary = ExperimentSummary(
        arms=arms,
        segments={"cold": cold, "warm": arms},
        series=pd.DataFrame(),
        new_products=NewProductStats(first_day, 20, 10_000, 12, 10, {}),
        per_variant={},
        per_user=pd.DataFrame(),
    )
    report = build_report(summary)
    setup = {"control": "popularity", "treatment": "champion", "days": 7.0, "users": 1500, "seed": 0}
    details = {"setup": {**setup, "exploration": True}, "user_bootstrap_ci95": [0.3, 0.5], "run": STAMP}
    details["targets"] = targets(report, details)
    write_json(artifacts / "ab" / "report.json", report)
    write_json(artifacts / "ab" / "details.json", details)
    return report


def write_consistency(
    artifacts: Path, monkeypatch: pytest.MonkeyPatch, store: str, mismatches: int, stamp: dict
) -> None:
    """consistency.json + consistency_details.json by zadanie2's ``write_result`` (stamp fixed)."""
    monkeypatch.setattr(consistency_check, "run_stamp", lambda: stamp)
    result = ConsistencyResult(
        entities_checked=3056,
        features_checked=38,
        values_compared=64_812,
        mismatches=mismatches,
        match_rate=(64_812 - mismatches) / 64_812,
        max_abs_diff=0.0 if not mismatches else 0.5,
        online_store=store,
        examples=["sdk user_stats (7,) user_n_events: offline=3 online=4"] if mismatches else [],
    )
    write_result(result, artifacts / "features" / "consistency.json")


def write_serving(
    artifacts: Path, recommend_p99_s: float, *, flagged: list[str] | None = None, floor: dict | None = None
) -> None:
    """serving.json as ``run_bench`` assembles it (run_record + serving_ratios) and serving_details.json."""

    def step(target: str, rate: float | None, latency_s: float, errors: int = 0) -> dict[str, object]:
        n = int(rate * 10) if rate else 5000  # 10 s steps
        samples = np.full(n, latency_s)
        if (target, rate) == ("recommend", 300.0):
            samples[-60:] = recommend_p99_s  # the slowest 2 % set the p99
        return run_record(target, rate, summarize(samples, errors, 10.0))

    runs = [
        step("health", 100.0, 0.0009),
        step("health", 300.0, 0.0005),
        step("recommend", 100.0, 0.0034),
        step("recommend", 300.0, 0.00225),
        step("recommend", None, 0.0306),
        step("feast_feature_server", 300.0, 5.0, errors=2964),
    ]
    serving = {
        "cores": 2,
        "load_generator": "zadanie4.evaluation.bench.open_loop_load: asyncio + aiohttp on uvloop, open loop",
        "duration_s": 10.0,
        "runs": runs,
        "ratios": serving_ratios(runs, 300.0),
    }
    _write(artifacts / "bench" / "serving.json", serving)
    _write(
        artifacts / "bench" / "serving_details.json",
        {
            "command": "make bench",
            "run": STAMP,
            "flagged_runs": flagged or [],
            "noisy_runs": [],
            "machine": {"cores": 2, "floor": floor} if floor else {"cores": 2},
        },
    )


def _scaling_row(label: str, p99: float) -> dict[str, object]:
    """One row as ``scaling_benchmark.measure_service`` returns it (rates 100 and 300)."""
    row: dict[str, object] = {"label": label, "startup_s": 4.2, "rss_ready_mib": 210.0, "products_cached": 1500}
    for rate in ("100", "300"):
        row |= {f"p50_ms@{rate}": 2.1, f"p99_ms@{rate}": p99, f"errors@{rate}": 0, f"cpu_ms@{rate}": 1.3}
        row[f"degraded@{rate}"] = 0
    return row | {"max_rps": 505.4, "degraded@max": 0, "rss_after_load_mib": 230.5, "generator_saturated": False}


def write_scaling(artifacts: Path) -> dict:
    payload = {
        "conditions": {
            "rates_rps": [100.0, 300.0],
            "duration_s": 6.0,
            "max_step_s": 5.0,
            "max_concurrency": 16,
            "started_at": "2026-12-06T03:40:00+00:00",
            "catalogue_candidates": 500,
            "command": "make bench",
            "pinning": "service on core 0, generator on core 1",
            "users": 3000,
            "days": 28,
        },
        "candidates": [
            {"candidates": 100, **_scaling_row("candidates=100", 3.1), "noise": []},
            {"candidates": 2000, **_scaling_row("candidates=2000", 17.25), "noise": []},
        ],
        "catalogue": [{"catalogue_products": 100_000, **_scaling_row("products=100000", 6.5), "noise": []}],
        "run": STAMP,
    }
    scaling_markdown(payload)  # the writer's own reader accepts the fixture
    _write(artifacts / "bench" / "scaling.json", payload)
    return payload


LOCUST_STATS = [
    {"Type": "GET", "Name": "GET /recommend [warm]", "Request Count": "6000", "Failure Count": "3",
     "Average Response Time": "5.2", "Max Response Time": "88.4", "Requests/s": "100.0", "50%": "4", "95%": "9",
     "99%": "15"},
    {"Type": "", "Name": "Aggregated", "Request Count": "9000", "Failure Count": "3", "Average Response Time": "4.6",
     "Max Response Time": "88.4", "Requests/s": "150.0", "50%": "4", "95%": "8", "99%": "14"},
]  # fmt: skip


def write_loadtest(artifacts: Path) -> None:
    """test_summary.json: the outer keys of ``run_loadtest`` around ``summary_from_locust_rows``."""
    summary = {
        "run": STAMP,
        "host": "http://127.0.0.1:40123",
        "service": "started by make loadtest",
        "started_at": "2026-12-06T03:00:00+00:00",
        "users": 50,
        "spawn_rate": 10.0,
        "run_time_s": 60.0,
        "pinning": "service core 0, locust core 1",
        **summary_from_locust_rows(LOCUST_STATS),
        "reports": {"stats_csv": "locust_stats.csv"},
    }
    _write(artifacts / "load_test_results" / "test_summary.json", summary)


def write_reliability(artifacts: Path, monkeypatch: pytest.MonkeyPatch, *, redis_recovers: bool = True) -> None:
    """report.json by the reliability ``write_report`` itself (stamp fixed)."""
    monkeypatch.setattr(reliability_report, "run_stamp", lambda: STAMP)
    results = [
        ScenarioResult(
            name="redis stopped",
            passed=redis_recovers,
            criterion="no 5xx; degraded answers; recovery < 10 s",
            requests=500,
            non_2xx={"error": 0},
            p99_ms={"before": 3.1, "during": 27.456, "after": 3.3},
            recovery_s=1.234,
            details={"checks": {"no_5xx": True, "recovered": redis_recovers}},
        ),
        ScenarioResult(
            name="oversized body",
            passed=True,
            criterion="413 | never 500",
            requests=20,
            non_2xx={"413": 20},
            details={"checks": {"all_413": True}},
        ),
    ]
    write_report(results, artifacts / "reliability", extra={"profile": "full"})


def write_model_comparison(artifacts: Path) -> None:
    """model_comparison.json as ``run_training`` writes it, rows from ``comparison_records``."""
    columns = [*CLASSIFICATION_COLUMNS, *ranking_columns(10)]
    rows = {
        "LightGBM": {
            "roc_auc": 0.7591,
            "precision@10": 0.2113,
            "ndcg@10": 0.2512,
            "training_time_seconds": 3.456,
            "inference_time_ms": 0.00108,
        },
        "Popularity baseline": {"roc_auc": 0.6812, "precision@10": 0.1204, "ndcg@10": 0.1321},
    }
    frame = pd.DataFrame([{c: values.get(c, np.nan) for c in columns} for values in rows.values()], columns=columns)
    frame.index = pd.Index(list(rows), name="model")
    payload = {"k": 10, "final_model": "LightGBM", "models": comparison_records(frame), "run": STAMP}
    _write(artifacts / "train" / "model_comparison.json", payload)


def _gate(version: int, passed: bool) -> dict[str, object]:
    """validation_<version>.json with ValidationReport.to_dict's keys the report reads, and the stamp."""
    check = {"metric": "roc_auc", "value": 0.76, "op": ">=", "threshold": 0.72, "status": "pass", "note": ""}
    quality = {"name": "quality", "status": "pass" if passed else "fail", "checks": [check], "reason": "roc_auc 0.76"}
    return {
        "report_id": f"validation-recsys-ranker-v{version}-20261206T035200Z",
        "model_name": "recsys-ranker",
        "version": version,
        "champion_version": version - 1 if version > 1 else None,
        "passed": passed,
        "failed_gates": [] if passed else ["quality"],
        "gates": [quality, {"name": "latency", "status": "pass", "checks": [], "reason": "p99 1.1 ms"}],
        "non_default_thresholds": {"min_roc_auc": {"value": 0.72, "default": 0.85}},
        "measured_at": "2026-12-06T03:52:00Z",
        "run": STAMP,
    }


# --- the tests ---------------------------------------------------------------------------------------


def test_missing_reports_each_give_a_not_measured_line_with_their_command(artifacts: Path) -> None:
    # given an empty artifacts folder; when the document is rendered
    markdown = _render(artifacts)
    # then every section says which command measures it, and no requirement has a verdict
    for command in ("recsys evaluate --out artifacts/evaluate", "make ab", "recsys features check", "make bench"):
        assert f"not measured yet: run `{command}`" in markdown
    for command in ("make loadtest", "make reliability", "recsys train --out artifacts/train"):
        assert f"not measured yet: run `{command}`" in markdown
    assert "not measured yet: run `recsys registry validate challenger`" in markdown
    assert " met |" not in markdown and markdown.count("| not measured |") == 8
    assert (
        "| inference latency: p99 < 100 ms at 300 req/s (goal ≤ 10 ms) | – | not measured | `make bench` |" in markdown
    )


def test_header_says_it_is_generated_by_make_report_and_not_to_edit_it(artifacts: Path) -> None:
    markdown = _render(artifacts)
    assert markdown.startswith("# Measured results\n")
    assert "Generated by `make report`" in markdown and "do not edit by hand" in markdown.lower()


def test_offline_lift_of_more_than_ten_percent_is_met_with_its_figures_and_stamp(artifacts: Path) -> None:
    # given precision@10 0.1902 vs popularity 0.0917 (lift +107.4 %)
    write_offline(artifacts, 0.1902, 0.0917)
    # when
    markdown = _render(artifacts)
    # then the requirement row has the figures and "met", the section the table and the run's stamp
    row = _row(markdown, "CTR lift ≥ +10 % offline")
    assert "precision@10 0.1902 vs popularity 0.0917: +107.4 %" in row and "| met |" in row
    assert _header(markdown, "Offline quality") == (
        "## Offline quality — `recsys evaluate --out artifacts/evaluate`, measured on commit `1a2b3c4` at "
        "2026-12-06T03:52:00Z"
    )
    assert "| model | 0.1902 | 0.5000 | 0.2500 | 0.1000 | 0.3000 |" in markdown  # all users, every metric
    assert "| popularity | 0.0917 |" in markdown
    assert "**Lift of precision@10 vs popularity: +107.4 %**" in markdown
    assert "150,000 events before it" in markdown and "100 cold, 50 light, 850 warm" in markdown


def test_offline_lift_under_ten_percent_is_not_met(artifacts: Path) -> None:
    # given +5 % only
    write_offline(artifacts, 0.105, 0.100)
    row = _row(_render(artifacts), "CTR lift ≥ +10 % offline")
    assert "+5.0 %" in row and "| **not met** |" in row


def test_ab_lift_ci_and_p_value_come_from_report_json_and_the_stamp_from_details(artifacts: Path) -> None:
    # given control CTR 5 % and treatment CTR 7 % over 20,000 impressions each
    report = write_ab(artifacts, control=(1000, 20_000), treatment=(1400, 20_000))
    # when
    markdown = _render(artifacts)
    # then the lift is +40 % with the z-test's interval and p-value, significant: met
    low, high = report["ci95"]
    row = _row(markdown, "CTR lift ≥ +10 % in the simulated A/B test")
    assert f"lift +40.0 %, 95 % CI [{low * 100:+.1f} %, {high * 100:+.1f} %], p = {report['p_value']:.2g}" in row
    assert report["p_value"] < 1e-9 and "| met |" in row
    assert _header(markdown, "Simulated A/B test").endswith("measured on commit `1a2b3c4` at 2026-12-06T03:52:00Z")
    assert "| control | 750 | 20,000 | 1,000 | 5.000 % |" in markdown
    assert "| treatment | 750 | 20,000 | 1,400 | 7.000 % |" in markdown
    assert "Per-user bootstrap 95 % CI of the lift (whole users resampled): [+30.0 %, +50.0 %]." in markdown
    assert "| lift >= +10 % with p < 0.01 | +40.0%, p=" in markdown  # make ab's own targets, from details.json


def test_ab_lift_that_is_not_significant_is_not_met(artifacts: Path) -> None:
    # given +12 % on 500 impressions per arm: above the bar, but p far above 0.01
    write_ab(artifacts, control=(25, 500), treatment=(28, 500))
    row = _row(_render(artifacts), "CTR lift ≥ +10 % in the simulated A/B test")
    assert "lift +12.0 %" in row and "| **not met** |" in row


def test_cold_start_rows_compare_new_users_with_popularity_and_count_new_products(artifacts: Path) -> None:
    # given new users as good as popularity offline, +3.3 % for cold users in the A/B test, and new
    # products at 5.40 % of the first-day impressions
    write_offline(artifacts, 0.19, 0.09, cold=(0.0779, 0.0779))
    write_ab(artifacts, control=(1000, 20_000), treatment=(1400, 20_000), first_day=540)
    # when
    markdown = _render(artifacts)
    # then both cold-start rows are met, with those figures
    users = _row(markdown, "cold start, new users")
    assert "offline precision@10 of 100 new users 0.0779 vs popularity 0.0779" in users
    assert "A/B lift for cold users +3.3 %" in users and "| met |" in users
    products = _row(markdown, "cold start, new products: ≥ 5 % of impressions on their first day")
    assert "5.40 % of first-day impressions" in products and "| met |" in products


def test_new_products_under_five_percent_of_first_day_impressions_is_not_met(artifacts: Path) -> None:
    write_ab(artifacts, control=(1000, 20_000), treatment=(1400, 20_000), first_day=120)
    products = _row(_render(artifacts), "cold start, new products")
    assert "1.20 % of first-day impressions" in products and "| **not met** |" in products


def test_consistency_shows_every_store_checked_and_zero_mismatches_is_met(
    artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a check on Redis, then one on SQLite (consistency.json keeps only the latest)
    write_consistency(artifacts, monkeypatch, "redis", 0, OTHER_STAMP)
    write_consistency(artifacts, monkeypatch, "sqlite", 0, STAMP)
    # when
    markdown = _render(artifacts)
    # then both stores are listed with their own stamps, and the requirement is met
    assert _header(markdown, "Offline/online feature consistency").endswith("commit `1a2b3c4` at 2026-12-06T03:52:00Z")
    assert (
        "| sqlite | 3,056 | 38 | 64,812 | 0 | 100.0000 % | 0 | on commit `1a2b3c4` at 2026-12-06T03:52:00Z |"
        in markdown
    )
    assert "| redis | 3,056 | 38 | 64,812 | 0 |" in markdown and "`9f8e7d6+dirty` at 2026-12-05T21:10:00Z" in markdown
    row = _row(markdown, "offline/online feature consistency")
    assert "0 mismatches in 64,812 values (sqlite); 0 mismatches in 64,812 values (redis)" in row
    assert "| met |" in row


def test_a_consistency_mismatch_is_not_met_and_the_first_mismatches_are_shown(
    artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_consistency(artifacts, monkeypatch, "sqlite", 3, STAMP)
    markdown = _render(artifacts)
    assert "| **not met** |" in _row(markdown, "offline/online feature consistency")
    assert "- `sdk user_stats (7,) user_n_events: offline=3 online=4`" in markdown


def test_serving_p99_under_100_ms_at_300_rps_is_met_and_says_whether_the_goal_is(artifacts: Path) -> None:
    # given /recommend at 300 req/s with p99 5.25 ms
    write_serving(artifacts, recommend_p99_s=0.00525)
    # when
    markdown = _render(artifacts)
    # then
    row = _row(markdown, "inference latency")
    assert "p99 5.25 ms, p50 2.25 ms, 0 errors of 3,000; goal ≤ 10 ms met" in row and "| met |" in row
    assert _header(markdown, "Serving latency") == (
        "## Serving latency — `make bench`, measured on commit `1a2b3c4` at 2026-12-06T03:52:00Z"
    )
    assert "| recommend | 300 | 300.0 | 2.25 | 2.25 | 5.25 | 0 / 3,000 |  |" in markdown
    assert "| recommend | max (closed loop) | 500.0 | 30.6 |" in markdown
    assert "| feast_feature_server | 300 | 3.6 | 5,000 | 5,000 | 5,000 | 2,964 / 3,000 |  |" in markdown
    assert "p99 of /recommend at 300 req/s: 10.5× the HTTP stack's floor (`health`); 1/952 of Feast's" in markdown


def test_serving_p99_over_100_ms_is_not_met_and_a_flagged_step_says_so(artifacts: Path) -> None:
    write_serving(artifacts, recommend_p99_s=0.1234, flagged=["recommend@300"])
    markdown = _render(artifacts)
    row = _row(markdown, "inference latency")
    assert "p99 123 ms" in row and "goal ≤ 10 ms not met (step flagged: load generator saturated)" in row
    assert "| **not met** |" in row
    assert "| recommend | 300 | 300.0 | 2.25 | 2.25 | 123 | 0 / 3,000 | flagged |" in markdown


def test_scaling_tables_come_from_scaling_json(artifacts: Path) -> None:
    write_scaling(artifacts)
    markdown = _render(artifacts)
    assert _header(markdown, "Serving scaling").endswith("measured on commit `1a2b3c4` at 2026-12-06T03:52:00Z")
    assert "| 2,000 | 2.10 | 17.25 | 2.10 | 17.25 | 505.40 | 230.50 | 4.20 |" in markdown
    assert "| 100,000 | 1,500 | 2.10 | 6.50 | 2.10 | 6.50 | 505.40 | 230.50 | 4.20 |" in markdown


def test_load_test_has_a_row_per_request_type_and_overall(artifacts: Path) -> None:
    write_loadtest(artifacts)
    markdown = _render(artifacts)
    assert "| GET /recommend [warm] | 6,000 | 3 | 100.0 | 4.00 | 9.00 | 15.0 | 88.4 |" in markdown
    assert "| **overall** | 9,000 | 3 | 150.0 | 4.00 | 8.00 | 14.0 | 88.4 |" in markdown
    assert "Locust, 50 simulated visitors" in markdown


def test_reliability_has_one_row_per_scenario_with_its_result_and_key_figures(
    artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given one scenario failing its recovery check, as the reliability writer reports it
    write_reliability(artifacts, monkeypatch, redis_recovers=False)
    # when
    markdown = _render(artifacts)
    # then
    assert _header(markdown, "Reliability").endswith("measured on commit `1a2b3c4` at 2026-12-06T03:52:00Z")
    assert "**1 of 2 scenarios passed** (full profile)" in markdown
    assert (
        "| redis stopped | **FAIL** | no 5xx; degraded answers; recovery < 10 s | recovery 1.23 s; p99 during "
        "27.5 ms; 0 non-2xx of 500; failed checks: recovered |"
    ) in markdown
    assert "| oversized body | PASS | 413 \\| never 500 | 20 non-2xx of 20 |" in markdown
    row = _row(markdown, "faults, bad input, durability, auth")
    assert "1 of 2 scenarios passed (failed: redis stopped)" in row and "| **not met** |" in row


def test_model_comparison_marks_the_final_model(artifacts: Path) -> None:
    write_model_comparison(artifacts)
    markdown = _render(artifacts)
    assert "| **LightGBM** (final) | 0.7591 | 0.2113 | 0.2512 | n/a | 3.46 | 1.08 |" in markdown
    assert "| Popularity baseline | 0.6812 | 0.1204 | 0.1321 | n/a | n/a | n/a |" in markdown


def test_the_gate_report_of_the_newest_version_is_shown(artifacts: Path) -> None:
    # given gate reports of v2 (passed) and v10 (failed): v10 is the newest version
    _write(artifacts / "registry" / "validation_2.json", _gate(2, passed=True))
    _write(artifacts / "registry" / "validation_10.json", _gate(10, passed=False))
    markdown = _render(artifacts)
    assert "`recsys-ranker` v10 vs champion v9: **FAIL** (quality)." in markdown
    assert "| quality | **FAIL** | roc_auc 0.76 |" in markdown and "| latency | PASS | p99 1.1 ms |" in markdown
    assert "min_roc_auc 0.72 (default 0.85)" in markdown


def test_malformed_json_gives_a_one_line_note_and_the_other_sections_are_still_written(artifacts: Path) -> None:
    # given a truncated serving.json and a binary test_summary.json next to a good offline evaluation
    (artifacts / "bench").mkdir()
    (artifacts / "bench" / "serving.json").write_text('{"runs": [')
    (artifacts / "load_test_results").mkdir()
    (artifacts / "load_test_results" / "test_summary.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\xfa")
    write_offline(artifacts, 0.1902, 0.0917)
    # when
    markdown = _render(artifacts)
    # then each section says what is wrong, the latency row is not measured, the offline section is intact
    assert "could not read `artifacts/bench/serving.json`: not valid JSON (Expecting value at line 1); " in markdown
    assert "could not read `artifacts/load_test_results/test_summary.json`: not valid JSON" in markdown
    assert "| not measured |" in _row(markdown, "inference latency")
    assert "| met |" in _row(markdown, "CTR lift ≥ +10 % offline")


def test_report_of_an_unexpected_shape_gives_a_note_instead_of_an_error(artifacts: Path) -> None:
    # given a reliability report without scenarios and a serving.json that is a list
    _write(artifacts / "reliability" / "report.json", {"passed": True})
    _write(artifacts / "bench" / "serving.json", [1, 2])
    markdown = _render(artifacts)
    assert "`artifacts/reliability/report.json` does not have the expected shape (missing key 'scenarios')" in markdown
    assert "could not read `artifacts/bench/serving.json`: not a JSON object but a list" in markdown
    assert "`artifacts/reliability/report.json`: missing key 'scenarios'" in _row(markdown, "faults, bad input")


def test_report_without_a_stamp_is_dated_by_its_file_time_and_commit_unknown(artifacts: Path) -> None:
    # given a load-test summary written before the stamp existed, last modified 2026-11-28 20:02:00 UTC
    write_loadtest(artifacts)
    path = artifacts / "load_test_results" / "test_summary.json"
    old = json.loads(path.read_text())
    del old["run"]
    path.write_text(json.dumps(old))
    when = pd.Timestamp("2026-11-28 20:02:00", tz="UTC").timestamp()
    os.utime(path, (when, when))
    # when / then
    assert _header(_render(artifacts), "Load test") == (
        "## Load test — `make loadtest`, measured on commit unknown at 2026-11-28T20:02:00Z (file time)"
    )


def test_stamp_sibling_missing_falls_back_to_the_report_file_time(artifacts: Path) -> None:
    # given report.json of the A/B test without its details.json
    write_ab(artifacts, control=(1000, 20_000), treatment=(1400, 20_000))
    (artifacts / "ab" / "details.json").unlink()
    when = pd.Timestamp("2026-12-01 10:00:00", tz="UTC").timestamp()
    os.utime(artifacts / "ab" / "report.json", (when, when))
    # when / then: still rendered, dated by the file
    markdown = _render(artifacts)
    assert _header(markdown, "Simulated A/B test").endswith("commit unknown at 2026-12-01T10:00:00Z (file time)")
    assert "**Lift +40.0 %**" in markdown


def test_entry_point_writes_results_md_and_the_figures_it_links(artifacts: Path, tmp_path: Path) -> None:
    # given a benchmark and an offline evaluation
    write_serving(artifacts, recommend_p99_s=0.00525)
    write_offline(artifacts, 0.1902, 0.0917)
    out = tmp_path / "docs" / "RESULTS.md"
    # when
    code = main(["--artifacts", str(artifacts), "--out", str(out)])
    # then
    assert code == 0
    markdown = out.read_text()
    for figure in (results_report.SERVING_FIGURE, results_report.OFFLINE_FIGURE):
        assert (out.parent / "figures" / figure).stat().st_size > 5_000
        assert f"](figures/{figure})" in markdown


def test_a_figure_whose_report_is_gone_stays_with_its_kept_section(artifacts: Path, tmp_path: Path) -> None:
    # given figures drawn from a benchmark whose JSON is not in this checkout any more
    write_serving(artifacts, recommend_p99_s=0.00525)
    out = tmp_path / "docs" / "RESULTS.md"
    write_results(artifacts, out)
    figure = out.parent / "figures" / results_report.SERVING_FIGURE
    first = out.read_text()
    assert figure.exists() and "serving_latency.png" in first
    (artifacts / "bench" / "serving.json").unlink()
    # when the document is written again
    write_results(artifacts, out)
    # then the section measured before is kept as it was, and the figure it links too
    assert figure.exists() and out.read_text() == first


def test_a_figure_whose_report_gives_none_is_removed(artifacts: Path, tmp_path: Path) -> None:
    # given a figure drawn from a benchmark, then a report without any /recommend step
    write_serving(artifacts, recommend_p99_s=0.00525)
    out = tmp_path / "docs" / "RESULTS.md"
    write_results(artifacts, out)
    figure = out.parent / "figures" / results_report.SERVING_FIGURE
    (artifacts / "bench" / "serving.json").write_text(json.dumps({"runs": []}))
    # when
    write_results(artifacts, out)
    # then the stale figure is gone and not linked
    assert not figure.exists() and "serving_latency.png" not in out.read_text()


def test_the_readme_results_block_is_rewritten_from_the_reports_and_the_rest_kept(
    artifacts: Path, tmp_path: Path
) -> None:
    # given a README with a results block holding stale text, and a fresh benchmark
    readme = tmp_path / "README.md"
    readme.write_text(
        "# shop\n\nintro\n<!-- results:start (generated) -->\nstale figures\n<!-- results:end -->\n\nrest\n"
    )
    write_serving(artifacts, recommend_p99_s=0.00525)
    # when the report is written with that README
    main(["--artifacts", str(artifacts), "--out", str(tmp_path / "docs" / "RESULTS.md"), "--readme", str(readme)])
    # then the block holds the requirements table with the measured p99, the rest of the README is unchanged
    text = readme.read_text()
    assert "stale figures" not in text
    assert text.startswith("# shop\n\nintro\n<!-- results:start (generated) -->\n| requirement |")
    assert text.endswith("<!-- results:end -->\n\nrest\n")
    assert "5.25" in text and "[docs/RESULTS.md](docs/RESULTS.md)" in text


def test_a_readme_without_the_markers_is_left_alone(artifacts: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# shop\n")
    write_results(artifacts, tmp_path / "docs" / "RESULTS.md", readme)
    assert readme.read_text() == "# shop\n"


def test_the_machine_floor_of_the_benchmark_is_shown_beside_its_latencies(artifacts: Path) -> None:
    # given a benchmark that recorded what a system call, a loop iteration and a socket round trip cost
    floor = {"syscall_ns": 731.6, "python_loop_iteration_ns": 23.4, "socket_round_trip_ns": 3968.0}
    write_serving(artifacts, recommend_p99_s=0.00525, floor=floor)
    # then the serving section says so, so two runs' tables can be compared
    markdown = _render(artifacts)
    assert "a system call 732 ns, a Python loop iteration 23.4 ns, a local socket round trip 4.0 µs" in markdown


def test_a_benchmark_without_a_machine_floor_has_no_floor_line(artifacts: Path) -> None:
    write_serving(artifacts, recommend_p99_s=0.00525)
    assert "Machine floor" not in _render(artifacts)


def _scale_payload() -> dict[str, Any]:
    from zadanie4.evaluation.scale.pipeline_scale import summarise

    def run(size: str, events: int, seconds: float, status: str = "ok") -> dict[str, Any]:
        stages = [
            {"name": "validate", "wall_s": seconds * 0.1, "peak_rss_mib": 500.0, "rows": events},
            {"name": "features", "wall_s": seconds * 0.9, "peak_rss_mib": 1000.0, "rows": events},
        ]
        return {
            "size": size, "events": events, "users": events // 20, "products": events // 200, "status": status,
            "stages": stages, "total_wall_s": seconds, "peak_rss_mib": 1000.0,
        }  # fmt: skip

    runs = [run("1m", 1_000_000, 100.0), run("5m", 5_000_000, 500.0)]
    return {"run": STAMP, "runs": runs, "growth": summarise(runs)}


def test_pipeline_scale_shows_each_size_and_stage_with_the_growth_exponent(artifacts: Path) -> None:
    _write(artifacts / "scale" / "scale.json", _scale_payload())
    markdown = _render(artifacts)
    assert "commit `1a2b3c4`" in _header(markdown, "Pipeline scale")
    row = _row(markdown, "5m (250,000 users")
    assert "5,000,000" in row and "| 500 |" in row and "450 / 1,000" in row
    assert "total 1.00; validate 1.00, features 1.00" in markdown


def test_serving_100k_shows_median_range_and_verdict_per_goal(artifacts: Path) -> None:
    from zadanie4.evaluation.scale.serving_100k import summarise_repeats

    repeats = [{"p99_ms@300": v, "startup_s": 9.0, "rss_after_load_mib": 800.0} for v in (7.0, 12.0, 8.5)]
    payload = {
        "run": STAMP,
        "subject": {"run": "artifacts/scale/runs/20m", "events": 20_000_000, "products_cached": 99_000},
        "conditions": {"repeats": 3},
        **summarise_repeats(repeats),
    }
    _write(artifacts / "scale" / "serving_100k.json", payload)
    row = _row(_render(artifacts), "p99_ms@300")
    assert "| 8.5 |" in row and "7 – 12" in row and "≤ 10" in row and row.endswith("| met |")


def test_sections_without_a_report_here_keep_the_previously_measured_text():
    from zadanie4.evaluation.results_report import keep_previous_sections

    old = (
        "# Results\n\n## Load test — `make loadtest`, measured on commit `abc` at 2026-12-01\n\n| a |\n\n"
        "## Pipeline scale — `make scale`, measured on commit `abc`\n\nold scale\n\n"
        "## Reliability — `make reliability`\n\nnot measured yet: run `make reliability`\n"
    )
    new = (
        "# Results\n\n## Load test — `make loadtest`\n\nnot measured yet: run `make loadtest`\n\n"
        "## Pipeline scale — `make scale`, measured on commit `def`\n\nnew scale\n\n"
        "## Reliability — `make reliability`\n\nnot measured yet: run `make reliability`\n"
    )
    merged = keep_previous_sections(new, old)
    assert "measured on commit `abc` at 2026-12-01\n\n| a |" in merged  # kept, with its own stamp
    assert "new scale" in merged and "old scale" not in merged  # measured here: replaced
    assert merged.count("not measured yet: run `make reliability`") == 1  # nothing to keep
    assert merged.index("Load test") < merged.index("Pipeline scale") < merged.index("Reliability")


def test_requirement_rows_without_a_report_here_keep_the_previous_row():
    from zadanie4.evaluation.results_report import keep_previous_rows

    old = "| requirement | measured |\n|---|---|\n| latency | p99 2.9 ms | met | `make bench` |\n| ab | +40 % | met | `make ab` |\n"
    new = "| requirement | measured |\n|---|---|\n| latency | – | not measured | `make bench` |\n| ab | +41 % | met | `make ab` |\n"
    assert keep_previous_rows(new, old) == (
        "| requirement | measured |\n|---|---|\n| latency | p99 2.9 ms | met | `make bench` |\n| ab | +41 % | met | `make ab` |\n"
    )
