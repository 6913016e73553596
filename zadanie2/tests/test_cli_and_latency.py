"""`recsys features build|apply|materialize|check|latency|push` end to end on a small event file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from shared.cli import build_app
from shared.errors import UserInputError
from zadanie2.latency_benchmark import percentiles_ms, run_latency_benchmark
from zadanie2.tests.conftest import BuiltStore, OfflineData, store_settings


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, offline_data: OfflineData) -> Path:
    for name in ("REDIS_URL", "RECSYS_FEATURES_REDIS_URL", "RECSYS_FEATURES_ONLINE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECSYS_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RECSYS_FEATURES_REPO_PATH", str(tmp_path / "repo"))
    (tmp_path / "data").mkdir()
    offline_data.events.head(400).to_parquet(tmp_path / "data" / "events.parquet", index=False)
    return tmp_path


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_build_apply_materialize_check_push(
    cli_env: Path, kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if kind == "redis":
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_test_db"))
        monkeypatch.setenv("RECSYS_FEATURES_PROJECT", "recsys_cli_test")
    runner = CliRunner()
    app = build_app()
    for command in (
        ["build"],
        ["apply"],
        ["materialize"],
        ["materialize", "--incremental"],
        ["check", "--sample", "50"],
    ):
        result = runner.invoke(app, ["features", *command])
        assert result.exit_code == 0, (command, result.output)
    features = cli_env / "artifacts" / "features"
    consistency = json.loads((features / "consistency.json").read_text())
    assert consistency["mismatches"] == 0 and consistency["online_store"] == kind
    assert (features / f"feast_cli_{kind}" / "feature_store.yaml").exists()
    assert json.loads((features / f"materialization_{kind}.json").read_text())["mode"] == "incremental"
    # a pushed event changes that user's online row, so the next check must fail (exit 1) until a
    # rebuild + incremental materialization brings offline and online together again
    pushed = cli_env / "push.csv"
    pd.DataFrame(
        [
            {
                "event_time": "2026-03-05T00:00:00Z",
                "event_type": "purchase",
                "product_id": 101,
                "user_id": 1,
                "category_id": 11,
                "price": 3.0,
            }
        ]
    ).to_csv(pushed, index=False)
    assert runner.invoke(app, ["features", "push", str(pushed)]).exit_code == 0
    assert runner.invoke(app, ["features", "check", "--sample", "1000"]).exit_code == 1
    for command in (["build"], ["materialize", "--incremental"], ["check", "--sample", "1000"]):
        result = runner.invoke(app, ["features", *command])
        assert result.exit_code == 0, (command, result.output)


def test_refresh_runs_the_whole_store_pipeline_in_one_command(cli_env: Path) -> None:
    result = CliRunner().invoke(build_app(), ["features", "refresh", "--sample", "20"])
    assert result.exit_code == 0, result.output
    assert json.loads((cli_env / "artifacts" / "features" / "consistency.json").read_text())["mismatches"] == 0


def test_materialize_before_build_is_a_user_error(cli_env: Path) -> None:
    result = CliRunner().invoke(build_app(), ["features", "materialize"])
    assert result.exit_code != 0 and isinstance(result.exception, UserInputError)
    assert "recsys features build" in str(result.exception)


def test_latency_benchmark_reports_both_read_paths(sqlite_store: BuiltStore) -> None:
    section = run_latency_benchmark(sqlite_store.settings, calls=10, n_products=5)
    assert section["online_store"] == "sqlite" and section["service_reader"] == "FeastSdkFeatureReader"
    for path in ("sdk", "service_path"):
        assert set(section[path]) == {"user", "products", "pairs"}
        assert all(stats["calls"] == 10 and stats["p99_ms"] >= stats["p50_ms"] > 0 for stats in section[path].values())
    assert section["materialization_seconds"] > 0


def test_latency_of_a_store_without_online_rows_is_refused(offline_data: OfflineData, tmp_path: Path) -> None:
    # given a store whose views are applied but never materialized (reads would all be fast misses)
    from zadanie2.feature_store_config import open_feature_store
    from zadanie2.materialization import apply_feature_repo

    settings = store_settings(offline_data, "sqlite", "recsys_empty", tmp_path / "empty")
    apply_feature_repo(settings, open_feature_store(settings))
    # when it is timed, then the run is refused instead of reporting misses as latency
    with pytest.raises(UserInputError, match="no online row"):
        run_latency_benchmark(settings, calls=10, n_products=5)


def test_percentiles_are_in_milliseconds() -> None:
    stats = percentiles_ms([0.001] * 99 + [0.1])
    assert stats["p50_ms"] == 1.0 and stats["calls"] == 100 and stats["p99_ms"] >= 1.0
