"""Settings of zadanie1 (EDA, candidates, ranker training, offline evaluation); env prefix ``RECSYS_TRAIN_``.

Example: ``RECSYS_TRAIN_LABEL_DAYS=5 RECSYS_TRAIN_N_CANDIDATES=200 recsys train``.
The MLflow tracking URI follows ``MLFLOW_TRACKING_URI`` when set, else a local sqlite file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PEER_BASELINES = ("popularity_tuned", "category_popularity", "item_knn", "ease", "als", "bpr")


class TrainingSettings(BaseSettings):
    """Every knob of the training / evaluation pipeline with its default."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_TRAIN_", extra="ignore")

    # time windows (all cutoffs are UTC midnights)
    label_days: int = Field(5, ge=1, description="length of each label window (train, validation, test), days")
    min_history_days: int = Field(3, ge=1, description="days of history required before the first cutoff")

    # candidates and ranking dataset
    n_candidates: int = Field(150, ge=10, description="candidates per user, in training and when serving")
    negatives_per_positive: float = Field(4.0, gt=0, description="sampled negatives per positive (training set)")
    min_negatives: int = Field(10, ge=0, description="sampled negatives per user at least (training set)")
    max_train_users: int = Field(20_000, ge=10, description="users sampled into the training set")
    max_eval_users: int = Field(2_000, ge=10, description="users sampled into validation / test sets")
    recall_n: tuple[int, ...] = Field((50, 100, 150, 200), description="candidate recall@N reported")
    recall_max_users: int = Field(1_000, ge=10, description="test users the candidate recall is measured on")

    # recommender (the same config the service uses)
    k: int = Field(10, ge=1, description="list length evaluated")
    max_per_category: int = Field(5, ge=0, description="diversity cap per category in a list (0 = off)")
    serve_n_candidates: int | None = Field(
        None,
        ge=10,
        description="candidates the recommender scores per user in `recsys evaluate` (None = n_candidates, as "
        "trained); zadanie4 serves 500 by default",
    )
    evaluate_max_users: int = Field(
        20_000, ge=100, description="holdout users `recsys evaluate` scores (a seeded sample when there are more)"
    )
    evaluate_baselines: Annotated[tuple[str, ...], NoDecode] = Field(
        PEER_BASELINES,
        description="peer baselines `recsys evaluate` tunes, fits and scores beside the ranker, comma-separated "
        "(zadanie1/peer_baselines.py; empty: none)",
    )
    baseline_threads: int = Field(2, ge=1, description="threads of implicit's item-kNN, ALS and BPR")
    warm_threshold_events: int = Field(5, ge=0, description="more events than this = warm user")
    cold_trending_share: float = Field(0.0, ge=0, le=1, description="share of a cold user's list from trending")

    # LightGBM final ranker
    lgbm_n_estimators: int = Field(400, ge=10)
    lgbm_learning_rate: float = Field(0.05, gt=0)
    lgbm_num_leaves: int = Field(31, ge=2)
    lgbm_min_child_samples: int = Field(50, ge=1)
    early_stopping_rounds: int = Field(40, ge=5)

    # comparison of the seven classifiers
    svm_max_rows: int = Field(5_000, ge=100, description="stratified subsample the SVM trains on")
    gradient_boosting_max_rows: int = Field(30_000, ge=100, description="stratified subsample for GradientBoosting")
    n_jobs: int = Field(
        1, ge=1, description="OpenMP threads of LightGBM / XGBoost / CatBoost (1: no spin-wait collapse on busy cores)"
    )
    forest_n_jobs: int = Field(2, ge=1, description="worker threads of the RandomForest")
    seed: int = 42

    # MLflow
    experiment_name: str = "recsys-ranker-comparison"
    mlflow_tracking_uri: str | None = Field(None, description="default: MLFLOW_TRACKING_URI or local sqlite")

    @field_validator("evaluate_baselines", mode="before")
    @classmethod
    def _known_baselines(cls, value: Any) -> tuple[str, ...]:
        names = [n.strip() for n in value.split(",")] if isinstance(value, str) else list(value)
        names = [n for n in names if n]
        unknown = sorted(set(names) - set(PEER_BASELINES))
        if unknown:
            raise ValueError(f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(PEER_BASELINES)}")
        return tuple(names)

    def tracking_uri(self, artifacts_dir: Path) -> str:
        """``mlflow_tracking_uri`` > ``MLFLOW_TRACKING_URI`` > sqlite:///<artifacts>/mlflow/mlflow.db."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return f"sqlite:///{(artifacts_dir / 'mlflow' / 'mlflow.db').as_posix()}"


def load_settings(**overrides: object) -> TrainingSettings:
    """Settings from the environment, with explicit overrides (e.g. CLI options) on top."""
    return TrainingSettings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
