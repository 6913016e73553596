"""Time windows, per-window datasets, and the two LightGBM ranker variants (binary and LambdaRank).

Windows (every boundary a UTC midnight, so Feast's daily snapshots line up)::

    data start ... train_cutoff | train labels | valid_cutoff | valid labels | test_cutoff | test labels | end
                   (features use only events before each cutoff)

``end`` = the midnight after the last event. Each window's dataset has its own feature tables
and candidate index built at its cutoff. The training set is negative-sampled; validation and test
keep every candidate. The final model is the variant with the higher NDCG@k on validation.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shared import column_names as col
from shared import feature_definitions as fd
from shared.cold_start_policy import ColdStartPolicyConfig
from shared.errors import UserInputError
from shared.feature_computation import DAY, as_utc, compute_feature_tables, compute_user_stats
from zadanie1.candidate_generation import CandidateIndex
from zadanie1.ranking_dataset import (
    DatasetConfig,
    FeatureLookup,
    RankingDataset,
    build_ranking_dataset,
    direct_feature_lookup,
)
from zadanie1.ranking_metrics import RankingScores, mean_ranking_metrics, top_k_per_group
from zadanie1.settings import TrainingSettings

BINARY = "lightgbm_binary"
LAMBDARANK = "lightgbm_lambdarank"
VARIANTS = (BINARY, LAMBDARANK)


def floor_day(ts: pd.Timestamp) -> pd.Timestamp:
    return as_utc(ts).floor("D")


@dataclass(frozen=True)
class TrainingWindows:
    data_start: pd.Timestamp
    train_cutoff: pd.Timestamp
    valid_cutoff: pd.Timestamp
    test_cutoff: pd.Timestamp | None  # None when the test window is not needed (evaluate)
    end: pd.Timestamp
    label_days: int

    def as_dict(self) -> dict[str, Any]:
        """For training_window.json: train_start / cutoff / label_end describe the final model's data."""
        return {
            "train_start": self.data_start.isoformat(),
            "cutoff": self.train_cutoff.isoformat(),
            "label_end": self.valid_cutoff.isoformat(),
            "valid_cutoff": self.valid_cutoff.isoformat(),
            "valid_label_end": (self.test_cutoff or self.end).isoformat(),
            "test_cutoff": self.test_cutoff.isoformat() if self.test_cutoff is not None else None,
            "test_label_end": self.end.isoformat() if self.test_cutoff is not None else None,
            "end": self.end.isoformat(),
            "label_days": self.label_days,
        }


def plan_windows(
    events: pd.DataFrame,
    *,
    label_days: int,
    min_history_days: int,
    with_test: bool,
    end: pd.Timestamp | None = None,
) -> TrainingWindows:
    """Day-aligned windows ending at ``end`` (default: midnight after the last event)."""
    if events.empty:
        raise UserInputError("no events to train on")
    times = events[col.EVENT_TIME]
    end = floor_day(times.max()) + DAY if end is None else as_utc(end)
    data_start = as_utc(times.min())
    n_windows = 3 if with_test else 2
    train_cutoff = end - n_windows * label_days * DAY
    if train_cutoff - floor_day(data_start) < min_history_days * DAY:
        span = (end - floor_day(data_start)) / DAY
        raise UserInputError(
            f"events span {span:.0f} day(s); {n_windows} label windows of {label_days} day(s) plus "
            f"{min_history_days} day(s) of history do not fit (lower --label-days or use a longer file)"
        )
    valid_cutoff = train_cutoff + label_days * DAY
    test_cutoff = valid_cutoff + label_days * DAY if with_test else None
    return TrainingWindows(data_start, train_cutoff, valid_cutoff, test_cutoff, end, label_days)


@dataclass
class WindowData:
    """What later steps need of one cutoff (its users' stats and candidate index), plus the dataset labelled
    by the window after it. The other feature tables are dropped once the dataset is built: kept for three
    windows, the pair table alone grew with every event."""

    cutoff: pd.Timestamp
    label_end: pd.Timestamp
    user_stats: pd.DataFrame
    index: CandidateIndex
    dataset: RankingDataset


def dataset_config(settings: TrainingSettings, max_users: int) -> DatasetConfig:
    return DatasetConfig(
        n_candidates=settings.n_candidates,
        negatives_per_positive=settings.negatives_per_positive,
        min_negatives=settings.min_negatives,
        max_users=max_users,
        seed=settings.seed,
    )


def cold_start_config(settings: TrainingSettings) -> ColdStartPolicyConfig:
    return ColdStartPolicyConfig(
        warm_threshold_events=settings.warm_threshold_events, trending_share=settings.cold_trending_share
    )


def prepare_window(
    events: pd.DataFrame,
    cutoff: pd.Timestamp,
    label_end: pd.Timestamp,
    settings: TrainingSettings,
    *,
    sample: bool,
    max_users: int,
    feature_lookup: FeatureLookup | None = None,
) -> WindowData:
    """User stats, candidate index and dataset for one cutoff (features via ``feature_lookup`` or directly:
    only the direct path computes every feature table here)."""
    if feature_lookup is None:
        tables = compute_feature_tables(events, cutoff)
        user_stats, feature_lookup = tables.user_stats, direct_feature_lookup(tables)
    else:
        user_stats = compute_user_stats(events, cutoff)
    index = CandidateIndex.build(events, cutoff)
    dataset = build_ranking_dataset(
        events,
        cutoff,
        label_end,
        candidate_index=index,
        user_stats=user_stats,
        feature_lookup=feature_lookup,
        config=dataset_config(settings, max_users),
        sample=sample,
        cold_start=cold_start_config(settings),
    )
    return WindowData(cutoff, label_end, user_stats, index, dataset)


# --- the two LightGBM variants -------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A fitted model with how it was trained; ``score(matrix)`` = higher is more relevant."""

    name: str
    estimator: Any
    score: Callable[[np.ndarray], np.ndarray]
    training_seconds: float
    n_train_rows: int
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def booster(self) -> Any:
        return getattr(self.estimator, "booster_", None)


@contextmanager
def _quiet_lightgbm() -> Iterator[None]:
    """Hide LightGBM's deprecation notice for ``eval_set`` (kept: it works on every supported version)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*eval_set.*", category=Warning)
        yield


def lightgbm_params(settings: TrainingSettings) -> dict[str, Any]:
    return {
        "n_estimators": settings.lgbm_n_estimators,
        "learning_rate": settings.lgbm_learning_rate,
        "num_leaves": settings.lgbm_num_leaves,
        "min_child_samples": settings.lgbm_min_child_samples,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
        "n_jobs": settings.n_jobs,
        "random_state": settings.seed,
        "verbose": -1,
    }


def train_lightgbm_binary(train: RankingDataset, valid: RankingDataset, settings: TrainingSettings) -> TrainedModel:
    """LGBMClassifier on "any interaction", early-stopped on validation AUC.

    AUC, not log-loss: the training set is negative-sampled, so its class prior differs from the
    (complete) validation lists and log-loss would stop after a handful of trees.
    """
    import lightgbm as lgb

    params = lightgbm_params(settings)
    model = lgb.LGBMClassifier(objective="binary", metric="auc", **params)
    started = time.perf_counter()
    with _quiet_lightgbm():
        model.fit(
            train.matrix,
            train.labels,
            eval_set=[(valid.matrix, valid.labels)],
            callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
            feature_name=list(fd.RANKER_FEATURES),
        )
    seconds = time.perf_counter() - started
    booster = model.booster_
    return TrainedModel(
        name=BINARY,
        estimator=model,
        score=lambda m: np.asarray(booster.predict(m, num_threads=settings.n_jobs)),
        training_seconds=seconds,
        n_train_rows=len(train),
        params={
            **params,
            "objective": "binary",
            "best_iteration": int(model.best_iteration_ or params["n_estimators"]),
        },
    )


def train_lightgbm_lambdarank(train: RankingDataset, valid: RankingDataset, settings: TrainingSettings) -> TrainedModel:
    """LGBMRanker (lambdarank) on graded relevance (view 1, cart 2, purchase 3), early-stopped on NDCG@k."""
    import lightgbm as lgb

    params = lightgbm_params(settings)
    model = lgb.LGBMRanker(objective="lambdarank", metric="ndcg", lambdarank_truncation_level=2 * settings.k, **params)
    started = time.perf_counter()
    with _quiet_lightgbm():
        model.fit(
            train.matrix,
            train.relevance,
            group=train.group_sizes,
            eval_set=[(valid.matrix, valid.relevance)],
            eval_group=[valid.group_sizes],
            eval_at=[settings.k],
            callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
            feature_name=list(fd.RANKER_FEATURES),
        )
    seconds = time.perf_counter() - started
    booster = model.booster_
    return TrainedModel(
        name=LAMBDARANK,
        estimator=model,
        score=lambda m: np.asarray(booster.predict(m, num_threads=settings.n_jobs)),
        training_seconds=seconds,
        n_train_rows=len(train),
        params={
            **params,
            "objective": "lambdarank",
            "best_iteration": int(model.best_iteration_ or params["n_estimators"]),
        },
    )


def rank_dataset(scores: np.ndarray, dataset: RankingDataset, k: int) -> list[list[int]]:
    """Top-``k`` products per user of ``dataset`` by ``scores`` (ties: candidate order)."""
    products = dataset.rows[col.PRODUCT_ID].to_numpy()
    return top_k_per_group(scores, products, dataset.group_ptr, k)


def ranking_scores(scores: np.ndarray, dataset: RankingDataset, k: int) -> RankingScores:
    """Mean precision/hitrate/NDCG/MAP@k over the dataset's users; misses of the candidate stage count."""
    tops = rank_dataset(scores, dataset, k)
    relevant = [dataset.relevant[int(u)] for u in dataset.users]
    return mean_ranking_metrics(tops, relevant, k)


@dataclass
class FittedRanker:
    """Both variants, their validation scores, and the chosen one."""

    models: dict[str, TrainedModel]
    valid_scores: dict[str, RankingScores]
    chosen: str

    @property
    def final(self) -> TrainedModel:
        return self.models[self.chosen]

    def reason(self, k: int) -> str:
        ranked = sorted(self.valid_scores.items(), key=lambda kv: -kv[1].ndcg)
        parts = ", ".join(f"{name} {scores.ndcg:.4f}" for name, scores in ranked)
        return f"{self.chosen} has the higher NDCG@{k} on the validation window ({parts})"


def fit_ranker(train: RankingDataset, valid: RankingDataset, settings: TrainingSettings) -> FittedRanker:
    """Train both LightGBM variants and choose the one with the higher validation NDCG@k."""
    if train.labels.sum() == 0 or valid.labels.sum() == 0:
        raise UserInputError("no positive (interacted) candidates in the training or validation window")
    models = {
        BINARY: train_lightgbm_binary(train, valid, settings),
        LAMBDARANK: train_lightgbm_lambdarank(train, valid, settings),
    }
    valid_scores = {name: ranking_scores(m.score(valid.matrix), valid, settings.k) for name, m in models.items()}
    chosen = max(VARIANTS, key=lambda name: (valid_scores[name].ndcg, name == LAMBDARANK))
    return FittedRanker(models, valid_scores, chosen)
