"""The benchmark's workload: warm users, Feast request bodies, the generator's schedule and its flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from zadanie4.evaluation.bench.open_loop_load import StepResult
from zadanie4.evaluation.bench.serving_benchmark import (
    BenchConfig,
    feast_feature_refs,
    feast_request_body,
    load_generator_description,
    parse_args,
    pick_warm_users,
)


def test_warm_users_have_enough_events_and_are_reproducible() -> None:
    events = pd.DataFrame({"user_id": [1] * 12 + [2] * 3 + [3] * 10 + [4] * 11})
    users = pick_warm_users(events, 10, min_events=10, seed=0)
    assert sorted(users) == [1, 3, 4]
    assert pick_warm_users(events, 2, min_events=10, seed=5) == pick_warm_users(events, 2, min_events=10, seed=5)
    assert len(pick_warm_users(events, 2, min_events=10, seed=5)) == 2
    assert pick_warm_users(events, 5, min_events=100, seed=0) == []


def test_feast_body_asks_for_the_user_and_every_product_row() -> None:
    body = json.loads(
        feast_request_body(7, [101, 102, 103], ["user_stats:user_n_events", "product_stats:product_price"])
    )
    assert body == {
        "features": ["user_stats:user_n_events", "product_stats:product_price"],
        "entities": {"user_id": [7, 7, 7], "product_id": [101, 102, 103]},
    }


def test_feast_feature_refs_cover_the_user_and_product_views_of_the_registry() -> None:
    refs = feast_feature_refs()
    assert "user_stats:user_n_events" in refs and "product_stats:product_price" in refs
    assert {r.split(":")[0] for r in refs} == {"user_stats", "product_stats"}
    assert len(refs) == len(set(refs))


def test_default_bench_uses_the_issue_rates_and_its_own_redis_database() -> None:
    config = parse_args([])
    assert config.rates == (100.0, 300.0) and config.ratio_rate == 300.0
    assert config.redis_url.endswith("/13") and config.n_candidates == 500
    assert parse_args(["--rates", "50,150"]).ratio_rate == 150.0


def test_generator_description_names_pinning_and_flagged_steps() -> None:
    text = load_generator_description(BenchConfig(), pinned=True, flagged=["health@max"])
    assert "core 1" in text and "core 0" in text and "FLAGGED" in text and "health@max" in text
    assert "not pinned" in load_generator_description(BenchConfig(), pinned=False, flagged=[])


def test_step_summary_subtracts_spin_from_the_generator_busy_time() -> None:
    # given a step whose generator burnt 6 s of CPU in 10 s, 5 s of which were spinning before due times
    result = StepResult(
        rate_rps=100.0,
        concurrency=None,
        latencies_s=np.full(1000, 0.002),
        errors=0,
        status_counts={"200": 1000},
        send_lags_s=np.zeros(1000),
        window_s=10.0,
        elapsed_s=10.0,
        cpu_s=6.0,
        spin_s=5.0,
    )
    summary = result.summary()
    # then it is not flagged: only 10 % was load-generation work
    assert summary["generator_cpu_share"] == 0.6 and summary["generator_busy_share"] == 0.1
    assert not summary["generator_saturated"]
    assert summary["p99_ms"] == 2.0 and summary["achieved_rps"] == 100.0


def test_scaling_markdown_has_a_row_per_configuration_and_flags_saturated_ones() -> None:
    from zadanie4.evaluation.bench.scaling_benchmark import scaling_markdown

    row = {"p50_ms@100": 4.0, "p99_ms@100": 6.0, "cpu_ms@100": 3.4, "max_rps": 420.5, "startup_s": 6.5}
    payload = {
        "conditions": {
            "rates_rps": [100.0],
            "duration_s": 6.0,
            "max_step_s": 5.0,
            "max_concurrency": 16,
            "pinning": "service on core 0, generator on core 1",
            "catalogue_candidates": 500,
            "users": 3000,
            "days": 28,
            "command": "make bench",
            "started_at": "2026-01-01T00:00:00+00:00",
        },
        "candidates": [{"label": "candidates=100", "candidates": 100, **row, "generator_saturated": True}],
        "catalogue": [{"label": "products=10000", "catalogue_products": 10_000, "products_cached": 9_468, **row}],
    }
    text = scaling_markdown(payload)
    assert "| candidates | p50_ms@100 | p99_ms@100 | cpu_ms@100 | max_rps |" in text
    assert "| 100 | 4.00 | 6.00 | 3.40 | 420.50 |" in text
    assert "| 10,000 | 9,468 | 6.50 |" in text
    assert "**Flagged**" in text and "candidates=100" in text


def test_catalogue_env_points_every_part_at_its_own_folders_and_feast_project(tmp_path: Path) -> None:
    from zadanie4.evaluation.bench.scaling_benchmark import catalogue_env

    env = catalogue_env({"PATH": "/bin", "MLFLOW_TRACKING_URI": "http://x"}, tmp_path, 10_000, "redis://h:1/13")
    assert env["RECSYS_DATA_DIR"] == str(tmp_path / "data")
    assert env["RECSYS_ARTIFACTS_DIR"] == str(tmp_path / "artifacts")
    assert env["RECSYS_FEATURES_PROJECT"] == "bench_p10000"
    assert env["REDIS_URL"] == env["RECSYS_FEATURES_REDIS_URL"] == "redis://h:1/13"
    assert "MLFLOW_TRACKING_URI" not in env and env["PATH"] == "/bin"
