"""Tiny end-to-end runs of ``recsys train`` and ``recsys evaluate`` on a small generated shop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from shared import column_names as col
from shared import feature_definitions as fd
from shared.cli import main
from shared.event_loader import validate_events
from zadanie1.candidate_generation import CandidateIndex
from zadanie1.model_comparison import CLASSIFICATION_COLUMNS, MODEL_ORDER
from zadanie1.offline_evaluation import evaluate_offline
from zadanie1.peer_baselines import BASELINES
from zadanie1.ranker_artifact import load_ranker
from zadanie1.tests.conftest import fast_settings
from zadanie1.training_pipeline import run_training

METRIC_KEYS = {"precision_at_10", "hitrate_at_10", "ndcg_at_10", "map_at_10", "coverage"}


def reject_nan(token: str) -> None:
    raise AssertionError(f"{token} is not valid JSON")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_events: pd.DataFrame):
    root = tmp_path_factory.mktemp("train")
    settings = fast_settings(mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    outcome = run_training(small_events, root / "train", settings, artifacts_dir=root, log_to_mlflow=True)
    return root, outcome


def test_train_writes_the_comparison_table_with_exactly_the_issue_columns(trained) -> None:
    root, _outcome = trained
    table = pd.read_csv(root / "train" / "model_comparison.csv", index_col="model")
    expected = [*CLASSIFICATION_COLUMNS, "precision@10", "hitrate@10", "ndcg@10", "map@10"]
    assert list(table.columns) == expected
    for name in MODEL_ORDER:  # the seven classifiers, SVM marked as subsampled
        assert sum(index.startswith(name) for index in table.index) >= 1
    assert any(index.startswith("SVM (stratified subsample") for index in table.index)
    assert "LightGBM LambdaRank (LGBMRanker)" in table.index
    lightgbm = table.loc["LightGBM"]
    assert lightgbm["true_positives"] + lightgbm["false_negatives"] > 0
    assert 0.5 < lightgbm["roc_auc"] <= 1.0
    assert (table["training_time_seconds"] >= 0).all()
    assert (root / "train" / "model_comparison.md").read_text().startswith("| model |")


def test_train_saves_a_loadable_ranker_candidate_index_and_day_aligned_windows(trained) -> None:
    root, outcome = trained
    out = root / "train"
    ranker = load_ranker(out / "ranker", expected_features=fd.RANKER_FEATURES)
    assert ranker.meta["variant"] == outcome.final_variant
    assert ranker.meta["variant"] in ("lightgbm_binary", "lightgbm_lambdarank")
    assert not list(out.rglob("*.pkl"))
    json.loads((out / "ranker" / "ranker_meta.json").read_text(), parse_constant=reject_nan)
    index = CandidateIndex.load(out / "candidates")
    assert index.cutoff == outcome.windows.end
    window = json.loads((out / "training_window.json").read_text())
    for key in ("train_start", "cutoff", "label_end", "serving_cutoff"):
        assert key in window
    for stamp in (*window["cutoffs"], window["serving_cutoff"]):
        assert pd.Timestamp(stamp) == pd.Timestamp(stamp).floor("D")
    report = (out / "report.md").read_text()
    assert "## Final model" in report and "## Candidate recall@N" in report and "## Timings" in report
    recall = pd.read_csv(out / "candidate_recall.csv")
    assert {"recent", "covisitation", "category_popular", "trending", "popular", "merged"} <= set(recall["source"])
    assert recall["recall"].between(0, 1).all()


def test_train_logs_one_mlflow_run_per_model(trained) -> None:
    import mlflow

    root, outcome = trained
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(fast_settings().experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == len(outcome.table) == 9  # 7 classifiers + LambdaRank + popularity baseline
    finals = [r for r in children if r.data.tags.get("final_model") == "true"]
    assert len(finals) == 1
    assert "ndcg_at_10" in finals[0].data.metrics
    artifacts = {a.path for a in client.list_artifacts(finals[0].info.run_id, "ranker")}
    assert {"ranker/model.txt", "ranker/ranker_meta.json"} <= artifacts
    # every model run has artifacts: its summary, and the native model file where the library has one
    native = {"LightGBM": "model.txt", "LightGBM LambdaRank (LGBMRanker)": "model.txt"}
    native |= {"XGBoost": "model.json", "CatBoost": "model.cbm"}
    for run in children:
        files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
        assert "model/model_summary.json" in files, run.data.tags["model_name"]
        assert "training_time_seconds" in run.data.metrics
        expected = native.get(run.data.tags["model_name"])
        if expected:
            assert f"model/{expected}" in files
            assert run.data.tags["model_file"] == expected


def check_payload(payload: dict, n_train: int, n_test: int, baselines: tuple[str, ...] = BASELINES) -> None:
    assert set(payload) == {
        "k",
        "cutoff",
        "n_train_events",
        "n_test_events",
        "segments",
        "lift_precision_at_10_vs_popularity",
        "lift_precision_at_10_vs_best_baseline",
    }
    assert payload["k"] == 10
    assert (payload["n_train_events"], payload["n_test_events"]) == (n_train, n_test)
    assert set(payload["segments"]) == {"all", "cold_users", "warm_users", "light_users", "returning_users"}
    methods = ("model", "popularity", "random", *baselines)
    for entry in payload["segments"].values():
        assert set(entry) == {"n_users", *methods}
        for method in methods:
            assert set(entry[method]) == METRIC_KEYS | {"new_product_hit_share"}
            assert all(isinstance(v, float) and math.isfinite(v) for v in entry[method].values())
    segments = payload["segments"]
    assert segments["all"]["n_users"] == segments["cold_users"]["n_users"] + segments["warm_users"]["n_users"]
    assert (
        segments["warm_users"]["n_users"] == segments["light_users"]["n_users"] + segments["returning_users"]["n_users"]
    )
    model_p = segments["all"]["model"]["precision_at_10"]
    popular_p = segments["all"]["popularity"]["precision_at_10"]
    assert payload["lift_precision_at_10_vs_popularity"] == pytest.approx((model_p - popular_p) / popular_p)
    for segment, lift in payload["lift_precision_at_10_vs_best_baseline"].items():
        rivals = {m: segments[segment][m]["precision_at_10"] for m in methods if m not in ("model", "random")}
        best = max(rivals.values())
        assert rivals[lift["best_baseline"]] == best
        assert lift["lift"] == pytest.approx((segments[segment]["model"]["precision_at_10"] - best) / best)


def test_evaluate_cli_writes_offline_eval_json_with_exactly_the_issue_shape(
    tmp_path: Path, small_events: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    events_path = tmp_path / "events.parquet"
    small_events.to_parquet(events_path)
    for name, value in {"RECSYS_TRAIN_N_CANDIDATES": "60", "RECSYS_TRAIN_LGBM_N_ESTIMATORS": "60"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                *("evaluate", "--events", str(events_path), "--out", str(tmp_path / "eval"), "--holdout-days", "4"),
                *("--serve-candidates", "80", "--max-per-category", "3"),
            ]
        )
    assert exit_info.value.code == 0
    details = json.loads((tmp_path / "eval" / "evaluation_details.json").read_text())
    assert details["recommender_config"]["n_candidates"] == 80  # scored per user; trained on 60
    assert details["recommender_config"]["max_per_category"] == 3
    payload = json.loads((tmp_path / "eval" / "offline_eval.json").read_text(), parse_constant=reject_nan)
    report = (tmp_path / "eval" / "report.md").read_text()
    assert f"{payload['lift_precision_at_10_vs_popularity']:+.1%}" in report
    assert "| cold_users |" in report and "| warm_users |" in report
    cutoff = pd.Timestamp(payload["cutoff"])
    assert cutoff == pd.Timestamp("2026-10-18", tz="UTC")  # the last 4 whole days
    n_train = int((small_events[col.EVENT_TIME] < cutoff).sum())
    check_payload(payload, n_train, len(small_events) - n_train)
    cold = payload["segments"]["cold_users"]
    assert cold["n_users"] > 0
    # cold users go through the cold-start path: not worse than popularity
    assert cold["model"]["precision_at_10"] >= cold["popularity"]["precision_at_10"]
    assert (
        payload["segments"]["all"]["model"]["precision_at_10"] > payload["segments"]["all"]["random"]["precision_at_10"]
    )


def test_evaluate_works_with_only_views_and_purchases_and_no_price_or_brand(small_events: pd.DataFrame) -> None:
    kept = small_events[small_events[col.EVENT_TYPE].isin(["view", "purchase"])]
    bare = validate_events(
        kept[[col.EVENT_TIME, col.EVENT_TYPE, col.PRODUCT_ID, col.CATEGORY_ID, col.USER_ID, col.USER_SESSION]]
    ).events
    assert bare[col.PRICE].isna().all() and bare[col.BRAND].isna().all()
    result = evaluate_offline(bare, settings=fast_settings(), holdout_fraction=0.2)
    cutoff = pd.Timestamp(result.payload["cutoff"])
    n_train = int((bare[col.EVENT_TIME] < cutoff).sum())
    check_payload(result.payload, n_train, len(bare) - n_train)
    assert cutoff == cutoff.floor("D")


def test_evaluate_scores_the_candidate_count_and_cap_it_is_given(small_events: pd.DataFrame, trained_ranker) -> None:
    settings = fast_settings(serve_n_candidates=200, max_per_category=2)
    result = evaluate_offline(small_events, settings=settings, holdout_days=4, ranker=trained_ranker)
    config = result.details["recommender_config"]
    assert (config["n_candidates"], config["max_per_category"], config["trained_with_n_candidates"]) == (200, 2, 60)
    check_payload(result.payload, *_split_sizes(small_events, result.payload["cutoff"]))


def _split_sizes(events: pd.DataFrame, cutoff: str) -> tuple[int, int]:
    n_train = int((events[col.EVENT_TIME] < pd.Timestamp(cutoff)).sum())
    return n_train, len(events) - n_train


def test_evaluate_scores_a_seeded_sample_when_there_are_more_holdout_users(
    small_events: pd.DataFrame, trained_ranker
) -> None:
    # given a cap below the number of users with holdout events
    settings = fast_settings(evaluate_max_users=100)
    # when evaluated twice
    first = evaluate_offline(small_events, settings=settings, holdout_days=4, ranker=trained_ranker)
    again = evaluate_offline(small_events, settings=settings, holdout_days=4, ranker=trained_ranker)
    # then 100 of them are scored, the same 100 each time, and the report says how many of how many
    assert first.details["holdout_users"] > 100
    assert first.details["evaluated_users"] == 100
    assert first.payload["segments"]["all"]["n_users"] == 100
    assert first.payload == again.payload
