"""The shared recommendation core: stages, filters, feature consistency and directional behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared import column_names as col
from shared import feature_definitions as fd
from shared.cold_start_policy import fallback_items
from shared.feature_computation import build_ranker_matrix
from zadanie1.offline_evaluation import ServingState
from zadanie1.recommender import (
    ProductFeatureBlock,
    RecommendationContext,
    RecommenderConfig,
    feature_matrix,
    recommend,
)
from zadanie1.tests.conftest import make_events

CUTOFF = pd.Timestamp("2026-10-18", tz="UTC")


class ConstantScorer:
    """Scores every candidate equally, so the order is the product id order."""

    def score(self, matrix: np.ndarray) -> np.ndarray:
        return np.zeros(len(matrix))


@pytest.fixture(scope="module")
def state(small_events: pd.DataFrame) -> ServingState:
    return ServingState.at(small_events, CUTOFF)


def run(state: ServingState, user_id: int | None, ranker, k: int = 10, **kwargs) -> list:
    row = state.user_rows.get(user_id) if user_id is not None else None
    pairs = state.pairs.for_user(user_id) if user_id is not None else (lambda ids: {})
    return recommend(row, state.products, pairs, state.index, state.popularity, ranker, k, **kwargs)


def warm_user(state: ServingState, min_purchases: int = 1) -> int:
    return next(
        u
        for u, r in state.user_rows.items()
        if r["user_n_events"] > 30 and r["user_n_purchases"] >= min_purchases and len(r["user_top_category_ids"]) >= 2
    )


def test_cold_user_gets_the_popularity_fallback(state: ServingState, trained_ranker) -> None:
    items = run(state, None, trained_ranker)
    assert [i.product_id for i in items] == state.popularity.top(10)
    assert {i.reason for i in items} == {"cold_start_popular"}


def test_cold_user_on_a_category_page_gets_that_category_first(state: ServingState, trained_ranker) -> None:
    category = next(iter(state.popularity.by_category))
    items = run(state, None, trained_ranker, context=RecommendationContext(category_id=category))
    expected = fallback_items(state.popularity, 10, category_id=category)
    assert [i.product_id for i in items] == [i.product_id for i in expected]
    assert items[0].reason == "category_popular"


def test_warm_user_gets_personalized_items_never_purchased_or_excluded(state: ServingState, trained_ranker) -> None:
    user = warm_user(state)
    purchased = set(state.user_rows[user]["user_purchased_product_ids"])
    excluded = tuple(state.popularity.top(3))
    items = run(state, user, trained_ranker, context=RecommendationContext(exclude_product_ids=excluded))
    ids = [i.product_id for i in items]
    assert len(ids) == len(set(ids)) == 10
    assert not (set(ids) & purchased)
    assert not (set(ids) & set(excluded))
    assert {i.reason for i in items} == {"personalized"}
    assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)


def test_light_user_reasons_name_the_session_or_category_source(state: ServingState, trained_ranker) -> None:
    light = next(u for u, r in state.user_rows.items() if 1 <= r["user_n_events"] <= 5)
    items = run(state, light, trained_ranker)
    assert len(items) == 10
    assert {i.reason for i in items} <= {"session_similar", "category_popular", "personalized", "cold_start_popular"}


def test_anonymous_session_context_is_ranked_by_the_model(state: ServingState, trained_ranker) -> None:
    session = tuple(state.popularity.top(20)[5:7])
    items = run(state, None, trained_ranker, context=RecommendationContext(session_product_ids=session))
    assert len(items) == 10
    assert "session_similar" in {i.reason for i in items}


def test_diversity_cap_limits_items_per_category(state: ServingState, trained_ranker) -> None:
    user = warm_user(state)
    items = run(state, user, trained_ranker, config=RecommenderConfig(max_per_category=2))
    categories = state.index.categories_of(np.array([i.product_id for i in items]))
    assert len(items) == 10
    assert np.unique(categories[categories >= 0], return_counts=True)[1].max() <= 2


def test_no_model_serves_popular_products_of_the_users_top_category(state: ServingState) -> None:
    user = warm_user(state)
    items = run(state, user, None)
    top_category = state.user_rows[user]["user_top_category_ids"][0]
    assert items[0].reason == "category_popular"
    assert state.index.categories_of(np.array([items[0].product_id]))[0] == top_category


def test_exploration_slots_hold_trending_products(state: ServingState, trained_ranker) -> None:
    user = warm_user(state)
    items = run(state, user, trained_ranker, config=RecommenderConfig(exploration_slots=2))
    assert [i.reason for i in items[-2:]] == ["exploration", "exploration"]
    assert len({i.product_id for i in items}) == 10


def test_recommendations_are_deterministic(state: ServingState, trained_ranker) -> None:
    user = warm_user(state)
    assert run(state, user, trained_ranker) == run(state, user, trained_ranker)


def test_serving_features_equal_training_features_for_the_same_pairs(state: ServingState) -> None:
    # Given the stored values of one user and the product block (serving) vs the joined tables (training)
    user = warm_user(state)
    ids = np.array(state.popularity.top(30) + list(state.user_rows[user]["user_recent_product_ids"][:5]) + [987654321])
    ids = np.unique(ids)
    serving, _ = feature_matrix(
        state.user_rows[user],
        state.products,
        state.pairs.for_user(user)(ids.tolist()),
        ids,
        state.index.categories_of(ids),
    )
    pairs = pd.DataFrame({col.USER_ID: user, col.PRODUCT_ID: ids})
    training = build_ranker_matrix(pairs, state.tables)
    np.testing.assert_allclose(serving, training, rtol=1e-6)
    # the generator's category ids are REES46-sized (~2e18): category features must still be found
    assert (serving[:, fd.RANKER_FEATURES.index("category_n_views")] > 0).mean() > 0.9


def test_unknown_products_get_registry_defaults_and_their_fallback_category() -> None:
    block = ProductFeatureBlock.from_frames(
        pd.DataFrame({"product_category_id": [5], "product_n_views": [10]}, index=pd.Index([1], name="product_id")),
        pd.DataFrame({"category_n_views": [100]}, index=pd.Index([5, 6], name="category_id").drop(6)),
    )
    columns, categories = block.take(np.array([1, 2]), fallback_category_ids=np.array([-1, 5]))
    assert categories.tolist() == [5, 5]
    assert columns["product_n_views"][0] == 10 and np.isnan(columns["product_n_views"][1])
    assert columns["product_category_id"].tolist() == [5.0, 5.0]
    assert columns["category_n_views"].tolist() == [100.0, 100.0]


def test_user_who_only_buys_in_one_category_gets_that_category_ranked_higher(
    small_events: pd.DataFrame, trained_ranker
) -> None:
    # Given two new users with identical behaviour, one only in category A, the other only in category B
    probe = ServingState.at(small_events, CUTOFF)
    by_size = sorted(probe.popularity.by_category, key=lambda c: -len(probe.popularity.by_category[c].product_ids))
    cat_a, cat_b = by_size[0], by_size[1]
    rows = []
    for user, category in ((900001, cat_a), (900002, cat_b)):
        products = probe.popularity.by_category[category].product_ids[:6].tolist()
        for day in range(3):
            for j, product in enumerate(products):
                stamp = pd.Timestamp("2026-10-14", tz="UTC") + pd.Timedelta(days=day, minutes=j)
                rows.append((stamp, "view", product, category, user, f"{user}-{day}"))
            rows.append((stamp + pd.Timedelta(minutes=1), "purchase", products[day], category, user, f"{user}-{day}"))
    events = pd.concat([small_events, make_events(rows)], ignore_index=True).sort_values(col.EVENT_TIME)
    state = ServingState.at(events, CUTOFF)
    config = RecommenderConfig(max_per_category=0)

    def share_in(user: int, category: int) -> float:
        items = run(state, user, trained_ranker, config=config)
        return float(np.mean(state.index.categories_of(np.array([i.product_id for i in items])) == category))

    # Then each user's list is dominated by their own category, more than the other user's and popularity's
    popular_share_a = float(np.mean(state.index.categories_of(np.array(state.popularity.top(10))) == cat_a))
    assert share_in(900001, cat_a) > max(share_in(900002, cat_a), popular_share_a)
    assert share_in(900002, cat_b) > share_in(900001, cat_b)

    # And the ranker alone (same candidates for both users) scores category-A products higher for user A
    candidates = np.array(
        state.popularity.by_category[cat_a].product_ids[6:16].tolist()
        + state.popularity.by_category[cat_b].product_ids[6:16].tolist()
    )
    in_a = state.index.categories_of(candidates) == cat_a

    def mean_rank_of_a(user: int) -> float:
        matrix, _ = feature_matrix(
            state.user_rows[user], state.products, {}, candidates, state.index.categories_of(candidates)
        )
        order = np.argsort(-trained_ranker.score(matrix), kind="stable")
        ranks = np.empty(len(order))
        ranks[order] = np.arange(len(order))
        return float(ranks[in_a].mean())

    assert mean_rank_of_a(900001) < mean_rank_of_a(900002)
