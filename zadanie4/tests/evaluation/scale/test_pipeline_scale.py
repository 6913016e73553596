"""make scale: sizes, growth exponents, the summary and the plot (the runs themselves are a benchmark)."""

from __future__ import annotations

import pytest

from zadanie4.evaluation.scale.pipeline_scale import SIZES, growth_exponent, parse_sizes, summarise, write_plot


def _run(events: int, seconds: float, memory: float, status: str = "ok") -> dict[str, object]:
    stages = [
        {"name": "validate", "wall_s": seconds / 4, "peak_rss_mib": memory / 2, "rows": events},
        {"name": "train", "wall_s": seconds * 3 / 4, "peak_rss_mib": memory, "rows": events},
    ]
    return {"events": events, "status": status, "stages": stages, "total_wall_s": seconds}


def test_the_20m_shop_has_a_million_users_and_100k_products():
    assert (SIZES["20m"].users, SIZES["20m"].products) == (1_000_000, 100_000)
    assert [s.label for s in parse_sizes("1m, 5m")] == ["1m", "5m"]
    with pytest.raises(SystemExit, match="choose from 1m, 5m, 20m"):
        parse_sizes("2m")


def test_growth_exponent_is_one_for_linear_cost_and_two_for_quadratic():
    assert growth_exponent([(1e6, 10.0), (5e6, 50.0), (2e7, 200.0)]) == pytest.approx(1.0)
    assert growth_exponent([(1e6, 1.0), (1e7, 100.0)]) == pytest.approx(2.0)
    assert growth_exponent([(1e6, 10.0)]) is None  # one size says nothing about growth
    assert growth_exponent([(1e6, 0.0), (2e7, 5.0)]) is None  # a zero cost has no exponent


def test_summary_ignores_failed_runs_and_reports_each_stage():
    # given two finished sizes (time linear, memory flat) and one that failed
    runs = [_run(1_000_000, 40, 800), _run(5_000_000, 200, 800), _run(20_000_000, 10, 50, status="failed after train")]
    # when summarised
    growth = summarise(runs)
    # then the failed run does not bend the exponents
    assert growth["stages"]["train"] == {"wall_exponent": pytest.approx(1.0), "peak_rss_exponent": 0.0}
    assert growth["total_wall_exponent"] == pytest.approx(1.0)


def test_the_plot_is_written(tmp_path):
    path = write_plot([_run(1_000_000, 40, 800), _run(5_000_000, 200, 1600)], tmp_path / "scale.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_serving_repeats_are_summarised_by_median_and_range_against_the_goals():
    from zadanie4.evaluation.scale.serving_100k import summarise_repeats

    rows = [
        {"p99_ms@300": 6.0, "startup_s": 12.0, "rss_after_load_mib": 900.0},
        {"p99_ms@300": 14.0, "startup_s": 11.0, "rss_after_load_mib": 950.0},
        {"p99_ms@300": 8.0, "startup_s": 40.0, "rss_after_load_mib": 910.0},
    ]
    summary = summarise_repeats(rows)
    assert summary["figures"]["p99_ms@300"] == {"median": 8.0, "min": 6.0, "max": 14.0}
    assert summary["goals"]["p99_ms@300"]["met"] is True  # the median, not the worst repeat
    assert summary["goals"]["startup_s"]["met"] is True
    assert summary["goals"]["rss_after_load_mib"]["median"] == 910.0
    assert "max_rps" not in summary["figures"]  # a figure no repeat has is left out, not invented


def test_a_run_of_some_sizes_keeps_the_earlier_rows_of_the_others():
    from zadanie4.evaluation.scale.pipeline_scale import merged_runs

    # given scale.json rows of 1m and 5m, and a new run of 5m and 20m
    previous = [{"size": "1m", "events": 1, "tag": "old"}, {"size": "5m", "events": 5, "tag": "old"}]
    new = [{"size": "20m", "events": 20, "tag": "new"}, {"size": "5m", "events": 5, "tag": "new"}]
    # when merged
    runs = merged_runs(previous, new)
    # then the 1m row stays, 5m is replaced, and rows are ordered by events
    assert [(run["size"], run["tag"]) for run in runs] == [("1m", "old"), ("5m", "new"), ("20m", "new")]


def test_scale_runs_materialize_into_the_benchmarks_redis_db():
    from zadanie4.evaluation.scale.pipeline_scale import online_store_env

    env = online_store_env("redis://127.0.0.1:6379/13")
    assert env == {"RECSYS_FEATURES_ONLINE_STORE": "redis", "RECSYS_FEATURES_REDIS_URL": "redis://127.0.0.1:6379/13"}


def test_serving_uses_the_runs_own_store_only_when_the_db_holds_it(tmp_path):
    import json

    import redis

    from zadanie4.evaluation.scale.serving_100k import run_store_in_redis

    url = "redis://127.0.0.1:6379/12"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    client.flushdb()
    try:
        features = tmp_path / "run" / "artifacts" / "features"
        # given no materialization report: not there
        assert not run_store_in_redis(tmp_path / "run", url)
        # given a report of 3 rows and a db with 2 hashes: not there; with 3: there
        features.mkdir(parents=True)
        (features / "materialization_redis.json").write_text(json.dumps({"rows_in_final_snapshot": {"a": 2, "b": 1}}))
        client.hset("k1", "f", "v")
        client.hset("k2", "f", "v")
        assert not run_store_in_redis(tmp_path / "run", url)
        client.hset("k3", "f", "v")
        assert run_store_in_redis(tmp_path / "run", url)
    finally:
        client.flushdb()
        client.close()
