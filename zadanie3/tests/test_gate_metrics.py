"""The gate metrics on hand-checked examples, and the fast weighted AUC against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from zadanie3.gate_metrics import (
    RankedScores,
    accuracy_and_f1,
    decision_threshold,
    mean_ndcg,
    ndcg_per_query,
    roc_auc,
)


def test_ndcg_of_a_perfect_and_of_a_reversed_list() -> None:
    labels = np.array([1, 0, 0, 1, 0, 0])
    queries = np.array([0, 0, 0, 1, 1, 1])
    perfect = np.array([3.0, 2.0, 1.0, 3.0, 2.0, 1.0])
    reversed_scores = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])

    assert mean_ndcg(labels, perfect, queries, k=10) == pytest.approx(1.0)
    # the positive ends third of three: 1 / log2(4) = 0.5
    assert mean_ndcg(labels, reversed_scores, queries, k=10) == pytest.approx(0.5)


def test_ndcg_counts_only_the_top_k_and_skips_queries_without_positives() -> None:
    labels = np.array([0, 0, 1, 0, 0, 0])
    scores = np.array([3.0, 2.0, 1.0, 3.0, 2.0, 1.0])
    queries = np.array([0, 0, 0, 1, 1, 1])

    values, kept = ndcg_per_query(labels, scores, queries, k=2)

    assert kept.tolist() == [0]
    assert values.tolist() == [0.0]


def test_tied_scores_are_ranked_pessimistically() -> None:
    labels = np.array([1, 0, 0, 0])  # the positive comes first in the file
    constant = np.zeros(4)

    assert mean_ndcg(labels, constant, np.zeros(4, dtype=int), k=10) == pytest.approx(1 / math.log2(5))


def test_weighted_auc_matches_scikit_learn_with_ties_and_weights() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(size=500) + labels, 1)  # rounding creates ties
    weights = rng.integers(0, 4, 500).astype(float)

    ranked = RankedScores.of(scores, labels)

    assert ranked.auc() == pytest.approx(roc_auc_score(labels, scores))
    assert ranked.auc(weights) == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights))


def test_auc_is_nan_with_one_class() -> None:
    assert math.isnan(roc_auc(np.ones(5), np.arange(5.0)))


def test_accuracy_and_f1_at_the_probability_threshold() -> None:
    labels = np.array([1, 1, 0, 0])
    scores = np.array([0.9, 0.4, 0.6, 0.1])

    accuracy, f1 = accuracy_and_f1(labels, scores, decision_threshold(scores, labels, probabilistic=True))

    assert accuracy == pytest.approx(0.5)
    assert f1 == pytest.approx(0.5)


def test_raw_scores_are_cut_at_the_positive_rate() -> None:
    labels = np.array([1, 0, 0, 0])
    scores = np.array([5.0, -1.0, 2.0, 0.0])

    threshold = decision_threshold(scores, labels, probabilistic=False)

    assert accuracy_and_f1(labels, scores, threshold) == (1.0, 1.0)
