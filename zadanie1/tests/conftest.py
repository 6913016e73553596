"""Shared fixtures: a small generated shop, hand-made event frames and fast settings."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pytest

from shared.event_loader import validate_events
from zadanie1.settings import TrainingSettings


def make_events(rows: Sequence[tuple], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Validated events from tuples (time, type, product, category, user, session) by default."""
    columns = columns or ("event_time", "event_type", "product_id", "category_id", "user_id", "user_session")
    return validate_events(pd.DataFrame(list(rows), columns=list(columns))).events


def fast_settings(**overrides: object) -> TrainingSettings:
    """Small models and samples so the end-to-end tests take seconds."""
    values: dict[str, object] = {
        "label_days": 4,
        "min_history_days": 3,
        "n_candidates": 60,
        "max_train_users": 400,
        "max_eval_users": 300,
        "recall_n": (20, 60),
        "recall_max_users": 100,
        "lgbm_n_estimators": 60,
        "early_stopping_rounds": 10,
        "svm_max_rows": 800,
        "gradient_boosting_max_rows": 3000,
        "n_jobs": 1,
        "mlflow_tracking_uri": None,
    }
    values.update(overrides)
    return TrainingSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def small_events() -> pd.DataFrame:
    """~25 k events: 500 users x 250 products x 21 days from the shared generator (deterministic)."""
    from shared.data_generator import GeneratorConfig, generate

    generated = generate(GeneratorConfig(n_users=500, n_products=250, days=21, seed=11)).events
    return validate_events(generated).events  # the loader's dtypes, as every command sees them


@pytest.fixture(scope="session")
def trained_ranker(small_events: pd.DataFrame):
    """A LightGBM ranker trained on the small shop before 2026-10-18 (windows as ``recsys evaluate``)."""
    from shared import feature_definitions as fd
    from zadanie1.offline_evaluation import _train_before
    from zadanie1.ranker_artifact import RankerArtifact

    cutoff = pd.Timestamp("2026-10-18", tz="UTC")
    artifact, _ = _train_before(small_events[small_events["event_time"] < cutoff], cutoff, fast_settings())
    assert isinstance(artifact, RankerArtifact)
    assert artifact.feature_names == fd.RANKER_FEATURES
    return artifact
