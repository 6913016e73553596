"""Peer baselines: the ranker's exclusions, popularity for users they cannot place, EASE's closed form,
settings chosen on validation without looking past the cutoff."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared import column_names as col
from zadanie1.peer_baselines import (
    BASELINES,
    BaselineSettings,
    Interactions,
    fit_baseline,
    fit_ease,
    popularity_scores,
    tune_and_fit,
)
from zadanie1.ranking_dataset import relevant_sets, window_relevance
from zadanie1.ranking_metrics import mean_ranking_metrics

pytest.importorskip("implicit")
CUTOFF = pd.Timestamp("2026-10-18", tz="UTC")
FAST = BaselineSettings(knn_neighbours=(20,), ease_regularization=(100.0,), factors=(16,), threads=1)


@pytest.fixture(scope="module")
def data(small_events: pd.DataFrame) -> Interactions:
    return Interactions.from_events(small_events, CUTOFF)


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("exclude_seen", [False, True])
def test_no_baseline_recommends_a_purchased_product_and_seen_ones_only_when_allowed(
    name: str, exclude_seen: bool, data: Interactions, small_events: pd.DataFrame
) -> None:
    from zadanie1.peer_baselines import grid

    params = {**grid(name, FAST)[0], "exclude_seen": exclude_seen and name != "popularity_tuned"}
    baseline = fit_baseline(name, params, data, popularity_scores(data, 7.0), FAST)
    users = data.user_ids[:150].tolist()
    before = small_events[small_events[col.EVENT_TIME] < CUTOFF]
    bought = before[before[col.EVENT_TYPE] == col.PURCHASE].groupby(col.USER_ID)[col.PRODUCT_ID].agg(set)
    seen = before.groupby(col.USER_ID)[col.PRODUCT_ID].agg(set)
    for user, items in zip(users, baseline.recommend(users, 10), strict=True):
        assert len(items) == 10 and len(set(items)) == 10
        assert not set(items) & bought.get(user, set())
        if params["exclude_seen"]:
            assert not set(items) & seen[user]


def test_a_user_without_history_gets_the_tuned_popularity_list(data: Interactions) -> None:
    popularity = popularity_scores(data, 3.0)
    als = fit_baseline("als", {"factors": 16, "exclude_seen": False}, data, popularity, FAST)
    expected = data.product_ids[np.lexsort((data.product_ids, -popularity))][:10].tolist()
    assert als.recommend([-12345], 10) == [expected]


def test_ease_weights_are_the_closed_form_solution(data: Interactions) -> None:
    ease = fit_ease(data, 50.0, max_items=40)
    x = data.matrix[:, ease.columns].toarray()
    x = (x > 0).astype(np.float64)
    inverse = np.linalg.inv(x.T @ x + 50.0 * np.eye(x.shape[1]))
    expected = -inverse / np.diag(inverse)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(ease.weights, expected, rtol=1e-4, atol=1e-6)
    assert len(ease.columns) == 40 and np.all(np.diag(ease.weights) == 0)


def test_settings_are_chosen_on_validation_and_the_holdout_is_never_read(small_events: pd.DataFrame) -> None:
    def relevant(start: pd.Timestamp, end: pd.Timestamp) -> dict[int, set[int]]:
        assert end <= CUTOFF  # only windows before the cutoff are ever scored
        return relevant_sets(window_relevance(small_events, start, end))

    names = ("popularity_tuned", "item_knn", "als")
    tuned = tune_and_fit(names, small_events, CUTOFF, relevant, FAST)
    only_before = small_events[small_events[col.EVENT_TIME] < CUTOFF]
    again = tune_and_fit(names, only_before, CUTOFF, relevant, FAST)
    users = tuned["als"].baseline.data.user_ids[:100].tolist()
    for name in names:
        result = tuned[name]
        best = max(t["precision_at_10"] for t in result.validation)
        chosen = next(t for t in result.validation if t["params"] == result.baseline.params)
        assert chosen["precision_at_10"] == best
        assert result.baseline.recommend(users, 10) == again[name].baseline.recommend(users, 10)


def test_collaborative_baselines_beat_popularity_for_returning_users(small_events: pd.DataFrame) -> None:
    end = CUTOFF + pd.Timedelta(days=4)
    truth = relevant_sets(window_relevance(small_events, CUTOFF, end))
    tuned = tune_and_fit(
        BASELINES, small_events, CUTOFF, lambda a, b: relevant_sets(window_relevance(small_events, a, b)), FAST
    )
    known = set(tuned["als"].baseline.data.user_ids.tolist())
    users = [u for u in sorted(truth) if u in known]

    def precision(name: str) -> float:
        lists = tuned[name].baseline.recommend(users, 10)
        return mean_ranking_metrics(lists, [truth[u] for u in users], 10).precision

    assert min(precision(n) for n in ("item_knn", "ease", "als")) > precision("popularity_tuned")
