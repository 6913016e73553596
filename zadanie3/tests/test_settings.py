"""Where the registry lives: explicit setting > MLFLOW_TRACKING_URI > local SQLite under the artifacts dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from zadanie3.settings import load_settings, redact_uri


def test_default_is_a_local_sqlite_file_with_a_local_artifact_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RECSYS_REGISTRY_TRACKING_URI", raising=False)
    monkeypatch.setenv("RECSYS_ARTIFACTS_DIR", str(tmp_path / "art"))

    settings = load_settings()

    assert settings.effective_tracking_uri == f"sqlite:///{tmp_path / 'art' / 'mlflow' / 'mlflow.db'}"
    assert settings.effective_artifact_root == tmp_path / "art" / "mlflow" / "artifacts"
    assert settings.uses_local_store
    assert settings.cache_dir == tmp_path / "art" / "registry" / "cache"
    assert settings.model_name == "recsys-ranker" and settings.gate_min_roc_auc == 0.85


def test_mlflow_tracking_uri_is_honoured_and_the_part_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.delenv("RECSYS_REGISTRY_TRACKING_URI", raising=False)
    assert load_settings().effective_tracking_uri == "http://mlflow:5000"
    assert not load_settings().uses_local_store

    monkeypatch.setenv("RECSYS_REGISTRY_TRACKING_URI", "postgresql+psycopg2://u@db/mlflow")
    assert load_settings().effective_tracking_uri == "postgresql+psycopg2://u@db/mlflow"
    assert load_settings().uses_local_store


def test_gate_thresholds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_REGISTRY_GATE_MIN_ROC_AUC", "0.7")

    assert load_settings().gate_min_roc_auc == 0.7


def test_passwords_are_redacted() -> None:
    assert redact_uri("postgresql://mlflow:pa55@db:5432/mlflow") == "postgresql://mlflow:***@db:5432/mlflow"
    assert redact_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
