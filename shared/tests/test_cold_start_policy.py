"""Cold-start stages and the popularity fallback list."""

from __future__ import annotations

import pandas as pd
import pytest

from shared.cold_start_policy import ColdStartPolicyConfig, fallback_items, user_stage
from shared.event_loader import validate_events
from shared.popularity import PopularityModel

CUTOFF = pd.Timestamp("2026-02-01", tz="UTC")


def popularity() -> PopularityModel:
    """Given: products 1..4 in category 10 and 5..6 in category 20; more views = lower id within a category."""
    rows = []
    for product, category, n_views in ((1, 10, 9), (2, 10, 7), (3, 10, 5), (4, 10, 1), (5, 20, 8), (6, 20, 2)):
        rows += [("2026-01-31 10:00:00", "view", product, category, 100 + i) for i in range(n_views)]
    rows += [("2026-01-31 11:00:00", "view", 6, 20, 200 + i) for i in range(4)]  # 6 is newly hot
    rows += [("2026-01-10 11:00:00", "view", 1, 10, 300 + i) for i in range(6)]
    frame = pd.DataFrame(rows, columns=["event_time", "event_type", "product_id", "category_id", "user_id"])
    return PopularityModel.fit(validate_events(frame).events, CUTOFF)


@pytest.mark.parametrize(
    ("n_events", "stage"),
    [(0, "cold"), (None, "cold"), (float("nan"), "cold"), (1, "light"), (5, "light"), (6, "warm"), (500, "warm")],
)
def test_stage_follows_the_event_count(n_events: float | None, stage: str) -> None:
    assert user_stage(n_events, ColdStartPolicyConfig(warm_threshold_events=5)) == stage


def test_threshold_zero_makes_every_known_user_warm() -> None:
    assert user_stage(1, ColdStartPolicyConfig(warm_threshold_events=0)) == "warm"


def test_cold_list_without_context_is_the_popularity_list() -> None:
    model = popularity()
    items = fallback_items(model, 4)
    assert [i.product_id for i in items] == model.top(4)
    assert {i.reason for i in items} == {"cold_start_popular"}
    assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)


def test_context_category_comes_first_then_global_popular() -> None:
    items = fallback_items(popularity(), 4, category_id=20)
    assert [i.product_id for i in items[:2]] == [5, 6]
    assert [i.reason for i in items] == ["category_popular"] * 2 + ["cold_start_popular"] * 2
    assert len({i.product_id for i in items}) == 4


def test_excluded_products_never_appear() -> None:
    items = fallback_items(popularity(), 3, exclude={1, 5})
    assert not {1, 5} & {i.product_id for i in items}
    assert len(items) == 3


def test_trending_share_puts_trending_products_after_the_popular_ones() -> None:
    model = popularity()
    items = fallback_items(model, 4, config=ColdStartPolicyConfig(trending_share=0.5))
    popular_part = [i.product_id for i in items[:2]]
    assert popular_part == model.top(2)
    assert [i.product_id for i in items[2:]] == model.trending(2, exclude=set(popular_part))


def test_unknown_category_falls_back_to_global_popularity() -> None:
    model = popularity()
    assert [i.product_id for i in fallback_items(model, 3, category_id=999)] == model.top(3)


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError):
        ColdStartPolicyConfig(trending_share=1.5)
    with pytest.raises(ValueError):
        ColdStartPolicyConfig(warm_threshold_events=-1)
