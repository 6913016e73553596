"""The registry workflow on an SQLite registry: register -> validate -> promote -> load -> rollback."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from shared.errors import UserInputError
from shared.feature_definitions import RANKER_FEATURES
from zadanie1.ranker_artifact import load_ranker
from zadanie3 import registry_client as rc
from zadanie3.evaluation_set import load_evaluation_set
from zadanie3.gate_runner import run_validation
from zadanie3.model_comparison_table import build_comparison, render_markdown, row_from_logged_metrics
from zadanie3.settings import RegistrySettings


def register(folder: Path, settings: RegistrySettings, **kwargs) -> int:
    return rc.register_ranker(folder, settings, **kwargs).version


def register_validated_champion(folder: Path, settings: RegistrySettings) -> int:
    version = register(folder, settings)
    report, _ = run_validation(version, settings)
    assert report.passed, report.summary_lines()
    rc.promote(version, settings)
    return version


def champion(settings: RegistrySettings) -> int | None:
    return rc.resolve_alias("champion", settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_registered_version_carries_features_signature_window_and_challenger_alias(
    good_ranker_dir: Path, settings: RegistrySettings
) -> None:
    import mlflow

    registered = rc.register_ranker(
        good_ranker_dir,
        settings,
        metrics={"test": {"roc_auc": 0.93, "ndcg@10": 0.61}, "note": "text is skipped"},
        training_window={"train_start": "2024-02-01T00:00:00Z", "cutoff": "2024-03-01T00:00:00Z"},
        tags={"git_sha": "abc123"},
    )

    info = rc.get_version(registered.version, settings)
    assert info.aliases == ("challenger",)
    assert json.loads(info.tags["feature_names"]) == list(RANKER_FEATURES)
    assert info.tags["feature_service"] == "ranker_v1"
    assert info.tags["training.cutoff"] == "2024-03-01T00:00:00Z"
    assert info.tags["git_sha"] == "abc123"
    assert info.tags["registered_by"] == "test-runner" and info.tags["validation.status"] == "not_validated"
    assert [e["action"] for e in rc.version_events(info.tags)] == ["registered", "alias_challenger"]
    assert info.metrics == {"test.roc_auc": 0.93, "test.ndcg_at_10": 0.61}
    model_info = mlflow.models.get_model_info(f"models:/{settings.model_name}/{registered.version}")
    assert model_info.signature.inputs.input_names() == list(RANKER_FEATURES)
    assert model_info.flavors["lightgbm"]["data"] == "model.lgb"  # native text, not a pickle
    # artifacts are in the configured local folder, never ./mlruns
    assert list(settings.effective_artifact_root.glob("models/*/artifacts/extra_files/model.txt"))
    assert not Path("mlruns").exists()


def test_promoted_champion_predicts_exactly_like_the_trained_model(
    good_ranker_dir: Path, settings: RegistrySettings, eval_set_path: Path
) -> None:
    import mlflow

    version = register_validated_champion(good_ranker_dir, settings)
    matrix = load_evaluation_set(eval_set_path).features[:300]
    expected = load_ranker(good_ranker_dir).score(matrix)

    native = mlflow.lightgbm.load_model(f"models:/{settings.model_name}@champion")
    loaded_version, artifact = rc.load_ranker_by_alias("champion", settings)

    assert champion(settings) == loaded_version == version
    np.testing.assert_array_equal(native.predict(matrix), expected)
    np.testing.assert_array_equal(artifact.score(matrix), expected)
    assert artifact.meta["loaded_from"] == "registry"
    report = json.loads((settings.registry_dir / f"validation_{version}.json").read_text())
    assert report["passed"] and report["version"] == version
    tags = rc.get_version(version, settings).tags
    assert tags["validation.report_id"] == report["report_id"]
    assert tags["promoted_by"] == "test-runner"
    assert "challenger" not in rc.get_version(version, settings).aliases


def test_shuffled_label_challenger_is_rejected_and_the_champion_stays(
    good_ranker_dir: Path, bad_ranker_dir: Path, settings: RegistrySettings
) -> None:
    good = register_validated_champion(good_ranker_dir, settings)
    bad = register(bad_ranker_dir, settings)

    report, path = run_validation(bad, settings)
    with pytest.raises(rc.PromotionRefused, match="failed the validation gate"):
        rc.promote(bad, settings)

    assert not report.passed and "quality" in report.failed_gates
    assert champion(settings) == good
    assert rc.get_version(bad, settings).tags["validation.status"] == "failed"
    assert json.loads(path.read_text())["failed_gates"] == report.failed_gates


def test_a_gate_passed_under_a_relaxed_bar_says_so_on_the_version(
    good_ranker_dir: Path, settings: RegistrySettings
) -> None:
    relaxed = settings.model_copy(update={"gate_min_roc_auc": 0.6})
    version = register(good_ranker_dir, relaxed)

    report, path = run_validation(version, relaxed)
    rc.promote(version, relaxed)

    assert report.passed and report.summary_lines()[1].split()[:2] == ["thresholds", "CHANGED"]
    assert json.loads(path.read_text())["non_default_thresholds"] == {"min_roc_auc": {"value": 0.6, "default": 0.85}}
    tags = rc.get_version(version, settings).tags
    assert tags["validation.non_default_thresholds"] == "min_roc_auc 0.6 (default 0.85)"
    events = {e["action"]: e for e in rc.version_events(tags)}
    assert events["validated"]["non_default_thresholds"] == events["promoted"]["non_default_thresholds"]


def test_forced_promotion_needs_a_reason_and_is_recorded(
    good_ranker_dir: Path, bad_ranker_dir: Path, settings: RegistrySettings
) -> None:
    good = register_validated_champion(good_ranker_dir, settings)
    bad = register(bad_ranker_dir, settings)
    run_validation(bad, settings)

    with pytest.raises(UserInputError, match="--reason"):
        rc.promote(bad, settings, force=True)
    move = rc.promote(bad, settings, force=True, reason="incident 42: old model serves stale features")

    assert (move.previous, move.current, move.forced) == (good, bad, True)
    tags = rc.get_version(bad, settings).tags
    assert tags["promotion_forced"] == "true"
    assert tags["promoted_reason"] == "incident 42: old model serves stale features"
    promoted = next(e for e in rc.version_events(tags) if e["action"] == "promoted")
    assert promoted["forced"] is True and promoted["previous_champion"] == good


def test_promotion_needs_a_validation_against_the_current_champion(
    good_ranker_dir: Path, second_good_ranker_dir: Path, settings: RegistrySettings
) -> None:
    first = register(good_ranker_dir, settings)
    with pytest.raises(rc.PromotionRefused, match="has not been validated"):
        rc.promote(first, settings)
    second = register(second_good_ranker_dir, settings)
    run_validation(second, settings)  # validated while there is no champion yet
    run_validation(first, settings)
    rc.promote(first, settings)

    with pytest.raises(rc.PromotionRefused, match="champion is now 1"):
        rc.promote(second, settings)


def test_rollback_restores_the_previous_champion_step_by_step(
    good_ranker_dir: Path, second_good_ranker_dir: Path, settings: RegistrySettings
) -> None:
    v1 = register_validated_champion(good_ranker_dir, settings)
    v2 = register_validated_champion(second_good_ranker_dir, settings)
    assert champion(settings) == v2
    assert rc.resolve_alias("previous_champion", settings) == v1

    move = rc.rollback(settings, reason="conversion dropped after release")

    assert (move.previous, move.current) == (v2, v1)
    assert champion(settings) == v1
    assert rc.resolve_alias("previous_champion", settings) is None
    assert rc.get_version(v2, settings).tags["rolled_back_reason"] == "conversion dropped after release"
    assert rc.version_events(rc.get_version(v1, settings).tags)[-1]["action"] == "restored"
    with pytest.raises(UserInputError, match="no previous champion"):
        rc.rollback(settings)


def test_registry_outage_serves_the_last_good_cached_champion(
    good_ranker_dir: Path, settings: RegistrySettings
) -> None:
    version = register_validated_champion(good_ranker_dir, settings)
    rc.load_ranker_by_alias("champion", settings)  # a healthy start fills the cache
    down = settings.model_copy(update={"tracking_uri": f"http://127.0.0.1:{free_port()}", "connect_timeout_s": 0.5})

    cached_version, artifact = rc.load_ranker_by_alias("champion", down)

    assert cached_version == version
    assert artifact.meta["loaded_from"] == "cache"
    with pytest.raises(rc.RegistryUnavailable, match="no cached 'challenger'"):
        rc.load_ranker_by_alias("challenger", down)
    with pytest.raises(rc.RegistryUnavailable):
        rc.resolve_alias("champion", down)


def test_missing_alias_is_not_served_from_cache(good_ranker_dir: Path, settings: RegistrySettings) -> None:
    register(good_ranker_dir, settings)

    with pytest.raises(rc.ModelNotFound, match="alias 'champion'"):
        rc.load_ranker_by_alias("champion", settings)
    assert rc.resolve_alias("champion", settings) is None


def test_compare_scores_every_version_on_the_same_rows(
    good_ranker_dir: Path, bad_ranker_dir: Path, settings: RegistrySettings
) -> None:
    good = register(good_ranker_dir, settings)
    bad = register(bad_ranker_dir, settings)

    rows, notes = build_comparison(settings)
    markdown = render_markdown(rows, model_name=settings.model_name, k=10, notes=notes)

    assert [r.version for r in rows] == [bad, good]
    by_version = {r.version: r for r in rows}
    assert by_version[good].roc_auc > 0.9 > 0.65 > by_version[bad].roc_auc
    assert by_version[good].ndcg_at_k > by_version[bad].ndcg_at_k
    assert all(r.source == "eval set" and 0 < r.p99_ms < 50 for r in rows)
    assert "| ROC-AUC | accuracy | F1 | ndcg@10 |" in markdown
    # registered without --metrics-json: the run carries training's figures from ranker_meta.json
    assert rc.get_version(good, settings).metrics["test_metrics.ndcg_at_10"] == 0.5
    assert "same 4,000 rows" in markdown


def test_cached_copy_is_reused_only_for_the_same_registry_run(
    good_ranker_dir: Path, bad_ranker_dir: Path, settings: RegistrySettings, eval_set_path: Path
) -> None:
    version = register_validated_champion(good_ranker_dir, settings)
    rc.load_ranker_by_alias("champion", settings)
    cached = settings.cache_dir / settings.model_name / "versions" / str(version)
    for name in ("model.txt", "ranker_meta.json"):  # pretend the cache holds another model
        shutil.copy2(bad_ranker_dir / name, cached / name)
    matrix = load_evaluation_set(eval_set_path).features[:100]

    _, reused = rc.load_ranker_by_alias("champion", settings)
    info = json.loads((cached / "version_info.json").read_text())
    (cached / "version_info.json").write_text(json.dumps({**info, "run_id": "run-of-an-older-registry"}))
    _, refreshed = rc.load_ranker_by_alias("champion", settings)

    np.testing.assert_array_equal(reused.score(matrix), load_ranker(bad_ranker_dir).score(matrix))
    np.testing.assert_array_equal(refreshed.score(matrix), load_ranker(good_ranker_dir).score(matrix))


def test_list_shows_each_versions_own_validation_figures(
    good_ranker_dir: Path, bad_ranker_dir: Path, settings: RegistrySettings
) -> None:
    register_validated_champion(good_ranker_dir, settings)
    bad = register(bad_ranker_dir, settings)
    report, _ = run_validation(bad, settings)

    info = next(v for v in rc.list_versions(settings) if v.version == bad)
    row = row_from_logged_metrics(info, 10)

    assert row.roc_auc == pytest.approx(report.figures.quality.roc_auc)
    assert row.roc_auc < 0.65 < info.metrics["validation.comparison.champion_roc_auc"]
