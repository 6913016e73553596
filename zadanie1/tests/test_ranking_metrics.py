"""Ranking metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zadanie1.ranking_metrics import (
    average_precision_at_k,
    coverage,
    hitrate_at_k,
    mean_ranking_metrics,
    ndcg_at_k,
    precision_at_k,
    top_k_per_group,
)

# Given: a list where positions 1 and 3 (1-based) are relevant, 3 relevant items in total.
RECOMMENDED = [10, 20, 30, 40]
RELEVANT = {10, 30, 99}


def test_precision_counts_hits_in_the_first_k_slots_divided_by_k() -> None:
    assert precision_at_k(RECOMMENDED, RELEVANT, 4) == pytest.approx(2 / 4)
    assert precision_at_k(RECOMMENDED, RELEVANT, 2) == pytest.approx(1 / 2)
    # a short list is padded with misses: 2 hits / k=10
    assert precision_at_k(RECOMMENDED, RELEVANT, 10) == pytest.approx(0.2)


def test_hitrate_is_one_when_any_of_the_first_k_is_relevant() -> None:
    assert hitrate_at_k(RECOMMENDED, RELEVANT, 1) == 1.0
    assert hitrate_at_k([20, 40], RELEVANT, 2) == 0.0


def test_ndcg_matches_the_hand_computed_value() -> None:
    dcg = 1 / math.log2(2) + 1 / math.log2(4)  # hits at ranks 1 and 3
    ideal = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # min(|relevant|=3, k=4) hits
    assert ndcg_at_k(RECOMMENDED, RELEVANT, 4) == pytest.approx(dcg / ideal)
    assert ndcg_at_k([10, 30, 99], RELEVANT, 3) == pytest.approx(1.0)
    assert ndcg_at_k(RECOMMENDED, set(), 4) == 0.0


def test_average_precision_averages_precision_at_each_hit() -> None:
    # hits at rank 1 (precision 1/1) and rank 3 (precision 2/3), divided by min(3, 4)
    assert average_precision_at_k(RECOMMENDED, RELEVANT, 4) == pytest.approx((1 + 2 / 3) / 3)
    assert average_precision_at_k([20, 10], {10}, 2) == pytest.approx(0.5)


def test_coverage_is_the_share_of_the_catalogue_in_any_top_k() -> None:
    assert coverage([[1, 2, 3], [3, 4, 5]], catalogue_size=10, k=2) == pytest.approx(4 / 10)  # {1,2,3,4}


def test_mean_metrics_average_over_users_and_count_empty_lists_as_zero() -> None:
    scores = mean_ranking_metrics([[1, 2], []], [{1}, {5}], 2, catalogue_size=4)
    assert scores.n_users == 2
    assert scores.precision == pytest.approx((1 / 2 + 0) / 2)
    assert scores.hitrate == pytest.approx(0.5)
    assert scores.ndcg == pytest.approx(0.5)
    assert scores.coverage == pytest.approx(2 / 4)
    assert set(scores.as_dict()) == {"precision_at_2", "hitrate_at_2", "ndcg_at_2", "map_at_2", "coverage"}


def test_top_k_per_group_orders_each_group_by_score_with_stable_ties() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.5, 0.2, 0.7])
    items = np.array([1, 2, 3, 4, 5, 6])
    ptr = np.array([0, 4, 6])
    assert top_k_per_group(scores, items, ptr, 2) == [[2, 3], [6, 5]]


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError):
        precision_at_k(RECOMMENDED, RELEVANT, 0)
