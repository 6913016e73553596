"""Synthetic labelled ranking data and small LightGBM rankers for the registry tests (no zadanie1 internals)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shared.feature_definitions import RANKER_FEATURES
from zadanie1.ranker_artifact import save_ranker
from zadanie3.evaluation_set import EvaluationSet, evaluation_set_from_frame

N_FEATURES = len(RANKER_FEATURES)
SIGNAL_WEIGHTS = {0: 2.0, 5: 1.5, 12: -1.5, 20: 1.0}  # feature index -> weight of the true click logit
START = pd.Timestamp("2024-03-01", tz="UTC")


def synthetic_frame(seed: int, *, n_users: int = 400, items_per_user: int = 10, days: int = 8) -> pd.DataFrame:
    """One ranked list per user (``items_per_user`` candidates) at a time spread over ``days`` days.

    Labels follow a logistic model of four features, so a good ranker reaches ROC-AUC ~0.9.
    """
    rng = np.random.default_rng(seed)
    n = n_users * items_per_user
    features = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    logit = sum(w * features[:, i] for i, w in SIGNAL_WEIGHTS.items()) - 1.5
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-3.0 * logit))).astype(np.int8)
    users = np.repeat(np.arange(1, n_users + 1, dtype=np.int64), items_per_user)
    offsets = rng.integers(0, days * 24 * 3600, size=n_users)
    times = START + pd.to_timedelta(np.repeat(offsets, items_per_user), unit="s")
    frame = pd.DataFrame(features, columns=list(RANKER_FEATURES))
    frame["label"] = labels
    frame["user_id"] = users
    frame["event_time"] = times
    frame["product_id"] = rng.integers(1, 5000, size=n).astype(np.int64)
    return frame


def synthetic_eval_set(seed: int = 7, **kwargs: int) -> EvaluationSet:
    return evaluation_set_from_frame(synthetic_frame(seed, **kwargs))


def train_booster(seed: int = 1, *, shuffle_labels: bool = False, rounds: int = 40):
    """A small binary LightGBM Booster on synthetic data; ``shuffle_labels`` makes a useless one."""
    import lightgbm as lgb

    frame = synthetic_frame(seed)
    labels = frame["label"].to_numpy()
    if shuffle_labels:
        labels = np.random.default_rng(seed + 100).permutation(labels)
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_data_in_leaf": 20,
        "verbose": -1,
        "num_threads": 1,
        "deterministic": True,
        "seed": seed,
    }
    data = lgb.Dataset(frame[list(RANKER_FEATURES)].to_numpy(np.float32), labels, feature_name=list(RANKER_FEATURES))
    return lgb.train(params, data, num_boost_round=rounds)


def write_ranker(folder: Path, seed: int = 1, *, shuffle_labels: bool = False) -> Path:
    booster = train_booster(seed, shuffle_labels=shuffle_labels)
    meta = {
        "variant": "binary",
        "objective": "binary",
        "synthetic_seed": seed,
        "shuffled_labels": shuffle_labels,
        "test_metrics": {"ndcg@10": 0.5, "precision@10": 0.2},
    }
    return save_ranker(booster, RANKER_FEATURES, meta, folder)
