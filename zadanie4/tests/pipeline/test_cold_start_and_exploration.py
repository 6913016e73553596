"""Staged cold start (reason per item) and the exploration budget for new products."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from zadanie4.pipeline.new_product_exploration import (
    ExplorationConfig,
    ThompsonExplorer,
    exploration_positions,
    interleave,
)
from zadanie4.tests.conftest import make_settings, running_service
from zadanie4.tests.service_fakes import make_dependencies

pytestmark = pytest.mark.anyio


async def test_each_cold_start_stage_is_served_by_its_path(shop, settings):
    popularity = shop.index.popularity
    category = max(popularity.by_category, key=lambda c: len(popularity.by_category[c].product_ids))
    light = shop.users_with_events_between(1, 5)[0]
    warm = shop.users_with_events(20)[0]
    async with running_service(settings, make_dependencies(shop)) as svc:
        get = svc.client.get
        cold = (await get("/recommend", params={"user_id": shop.unknown_user(), "k": 5})).json()
        cold_in_category = (
            await get("/recommend", params={"user_id": shop.unknown_user(), "k": 5, "category_id": category})
        ).json()
        light_body = (await get("/recommend", params={"user_id": light, "k": 10})).json()
        warm_body = (await get("/recommend", params={"user_id": warm, "k": 10})).json()
        cold_with_session = (
            await svc.client.post(
                "/recommend",
                json={"user_id": shop.unknown_user(), "k": 6, "session_product_ids": popularity.top(2)},
            )
        ).json()

    # 0 events: popularity (global, or the context category first)
    assert {i["reason"] for i in cold["items"]} == {"cold_start_popular"}
    in_category = [i for i in cold_in_category["items"] if i["reason"] == "category_popular"]
    assert in_category and [i["product_id"] for i in in_category] == popularity.top(
        len(in_category), category_id=category
    )
    # a few events: session/category candidates ranked by the model (popular fill ranked too)
    light_reasons = {i["reason"] for i in light_body["items"]}
    assert light_reasons & {"session_similar", "category_popular"} and light_reasons != {"personalized"}
    # past the threshold: the full personalized ranking
    assert {i["reason"] for i in warm_body["items"]} == {"personalized"}
    # an unknown user with session context gets session-based items
    assert "session_similar" in {i["reason"] for i in cold_with_session["items"]}
    for body in (cold, light_body, warm_body):
        assert body["degraded"] is False and body["variant"] == "champion"


async def test_exploration_fills_the_configured_share_of_slots_with_new_products(shop, tmp_path):
    settings = make_settings(tmp_path, exploration_share=0.1, exploration_max_views=5)
    users = shop.users_with_events(3)[:100] + [shop.unknown_user() + i for i in range(100)]
    n_views = shop.tables.product_stats["product_n_views"]
    async with running_service(settings, make_dependencies(shop)) as svc:
        bodies = [(await svc.client.get("/recommend", params={"user_id": u, "k": 10})).json() for u in users]
    items = [item for body in bodies for item in body["items"]]
    explored = [item for item in items if item["reason"] == "exploration"]
    assert len(items) == 2000
    assert abs(len(explored) / len(items) - 0.1) <= 0.01
    # exploration items are new products (few views) placed in the last slot, never duplicated in a list
    assert all(n_views.get(item["product_id"], 0) <= 5 for item in explored)
    for body in bodies:
        ids = [i["product_id"] for i in body["items"]]
        assert len(ids) == len(set(ids))
        assert [i for i, item in enumerate(body["items"]) if item["reason"] == "exploration"] in ([], [9])


async def test_exploration_share_holds_in_expectation_for_small_k(shop, tmp_path):
    settings = make_settings(tmp_path, exploration_share=0.1, exploration_max_views=5)
    async with running_service(settings, make_dependencies(shop)) as svc:
        bodies = [(await svc.client.get("/recommend", params={"user_id": u, "k": 4})).json() for u in range(600)]
    reasons = Counter(item["reason"] for body in bodies for item in body["items"])
    assert abs(reasons["exploration"] / sum(reasons.values()) - 0.1) < 0.03


def _explorer(seed: int = 3) -> ThompsonExplorer:
    explorer = ThompsonExplorer(ExplorationConfig(share=0.1, max_views=10, prior_ctr=0.05, prior_strength=20), seed)
    explorer.set_catalogue(
        product_ids=np.array([1, 2, 3, 4, 100]),
        category_ids=np.array([10, 10, 20, 20, 10]),
        n_views=np.array([0, 0, 0, 0, 500]),  # product 100 is not new
    )
    return explorer


def test_thompson_sampling_favours_the_new_product_that_gets_clicked():
    explorer = _explorer()
    for _ in range(200):
        explorer.record(1, "impression")
        explorer.record(2, "impression")
    for _ in range(60):
        explorer.record(1, "click")
    picks = Counter(explorer.choose(1)[0].product_id for _ in range(300))
    assert picks[1] > 250 and picks[2] == 0
    assert 100 not in picks  # established products never take exploration slots
    assert explorer.counts(1) == (200.0, 60.0)


def test_category_priors_lift_unseen_products_of_a_clicking_category():
    explorer = _explorer()
    for _ in range(300):  # category 20 converts well, category 10 badly (via the established product 100)
        explorer.record(100, "impression")
    for product in (3, 4):
        for _ in range(30):
            explorer.record(product, "impression")
        for _ in range(9):
            explorer.record(product, "click")
    explorer.set_catalogue(  # a refresh adds an unseen product to each category; counts survive it
        product_ids=np.array([1, 2, 3, 4, 5, 6, 100]),
        category_ids=np.array([10, 10, 20, 20, 10, 20, 10]),
        n_views=np.array([0, 0, 0, 0, 0, 0, 500]),
    )
    picks = Counter(explorer.choose(1, exclude={3, 4})[0].product_id for _ in range(300))
    assert picks[6] > picks[5] + picks[1] + picks[2]
    assert explorer.counts(3) == (30.0, 9.0)


def test_exploration_respects_exclusions_and_preferred_categories():
    explorer = _explorer()
    for _ in range(50):
        picks = explorer.choose(2, exclude={1}, preferred_categories=[20])
        assert {p.product_id for p in picks} == {3, 4}
    assert explorer.choose(0) == []


def test_a_large_pool_is_sampled_within_the_preferred_categories_until_they_are_exhausted():
    # given 20,000 new products in 50 categories (more per category than are sampled per request)
    n = 20_000
    ids = np.arange(n, dtype=np.int64) + 1_000
    categories = (np.arange(n) % 50).astype(np.int64)
    explorer = ThompsonExplorer(ExplorationConfig(), seed=5)
    explorer.set_catalogue(ids, categories, np.zeros(n))
    preferred = [7, 31]
    # when products are chosen for the preferred categories
    picks = [p.product_id for _ in range(300) for p in explorer.choose(2, preferred_categories=preferred)]
    # then every pick is of those categories and the draws spread over both of them and over many products
    picked_categories = {int(categories[p - 1_000]) for p in picks}
    assert picked_categories == set(preferred)
    assert len(set(picks)) > 200
    # and when every product of those categories is excluded, the whole pool is sampled instead
    excluded = {int(p) for p in ids[np.isin(categories, preferred)]}
    fallback = explorer.choose(1, exclude=excluded, preferred_categories=preferred)
    assert len(fallback) == 1 and fallback[0].product_id not in excluded


def test_exploration_slots_are_spread_and_end_at_the_last_position():
    assert exploration_positions(10, 1) == [9]
    assert exploration_positions(20, 2) == [9, 19]
    assert exploration_positions(5, 5) == [0, 1, 2, 3, 4]
    assert interleave(["a", "b", "c", "d"], ["X"], 4) == ["a", "b", "c", "X"]
    assert interleave(["a"], ["X", "Y"], 4) == ["a", "X", "Y"]  # short base: topped up, never padded
