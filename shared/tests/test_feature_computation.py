"""Feature functions: hand-computed examples, as-of correctness and defaults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared import feature_definitions as fd
from shared.event_loader import validate_events
from shared.feature_computation import (
    build_ranker_matrix,
    compute_category_stats,
    compute_feature_tables,
    compute_product_stats,
    compute_user_category_affinity,
    compute_user_product_interactions,
    compute_user_stats,
)

CUTOFF = pd.Timestamp("2026-01-10", tz="UTC")


def events_frame(rows: list[tuple[str, str, int, int, int | None, float | None, str]]) -> pd.DataFrame:
    """rows: (time, type, user, product, category, price, session)."""
    frame = pd.DataFrame(
        rows, columns=["event_time", "event_type", "user_id", "product_id", "category_id", "price", "user_session"]
    )
    return validate_events(frame).events


@pytest.fixture
def small_events() -> pd.DataFrame:
    return events_frame(
        [
            ("2026-01-01 10:00", "view", 1, 100, 7, 10.0, "s1"),
            ("2026-01-01 10:05", "view", 1, 101, 7, 30.0, "s1"),
            ("2026-01-01 10:06", "cart", 1, 101, 7, 30.0, "s1"),
            ("2026-01-05 12:00", "purchase", 1, 101, 7, 30.0, "s2"),
            ("2026-01-08 12:00", "view", 1, 200, 8, 50.0, "s3"),
            ("2026-01-09 00:00", "view", 2, 100, 7, 10.0, "s4"),
            # at or after the cutoff: must never count
            ("2026-01-10 00:00", "purchase", 1, 200, 8, 50.0, "s5"),
            ("2026-01-11 00:00", "view", 3, 100, 7, 10.0, "s6"),
        ]
    )


def test_user_stats_match_hand_computed_values(small_events: pd.DataFrame) -> None:
    user = compute_user_stats(small_events, CUTOFF).loc[1]
    assert (user.user_n_views, user.user_n_carts, user.user_n_purchases, user.user_n_events) == (3, 1, 1, 5)
    assert user.user_n_sessions == 3 and user.user_n_products == 3 and user.user_n_categories == 2
    assert user.user_avg_price == pytest.approx((10 + 30 + 50) / 3)
    assert user.user_recency_days == pytest.approx(1.5)  # last event 2026-01-08 12:00
    assert user.user_tenure_days == pytest.approx(8 + 14 / 24)
    assert user.user_cart_rate == pytest.approx(1 / 4) and user.user_purchase_rate == pytest.approx(1 / 4)
    assert user.user_top_category_ids == [7, 8]
    assert user.user_top_category_shares == pytest.approx([4 / 5, 1 / 5])
    assert user.user_top_category_share == pytest.approx(0.8)
    assert user.user_recent_product_ids == [200, 101, 100]
    assert user.user_purchased_product_ids == [101]


def test_events_at_or_after_the_cutoff_never_change_features(small_events: pd.DataFrame) -> None:
    before = small_events[small_events["event_time"] < CUTOFF]
    full = compute_feature_tables(small_events, CUTOFF)
    strict = compute_feature_tables(before, CUTOFF)
    pd.testing.assert_frame_equal(full.user_stats, strict.user_stats)
    pd.testing.assert_frame_equal(full.product_stats, strict.product_stats)
    pd.testing.assert_frame_equal(full.category_stats, strict.category_stats)
    pd.testing.assert_frame_equal(full.user_product_interactions, strict.user_product_interactions)
    assert 3 not in full.user_stats.index


def test_product_and_category_stats(small_events: pd.DataFrame) -> None:
    products = compute_product_stats(small_events, CUTOFF)
    p101 = products.loc[101]
    assert (p101.product_n_views, p101.product_n_carts, p101.product_n_purchases) == (1, 1, 1)
    assert p101.product_category_id == 7 and p101.product_price == pytest.approx(30.0)
    # global rates: 4 views, 1 cart, 1 purchase -> smoothed toward 0.25 with 20 pseudo-views
    assert p101.product_cart_rate == pytest.approx((1 + 20 * 0.25) / (1 + 20))
    assert products.loc[100].product_n_users == 2
    assert products.loc[100].product_views_7d == 1  # the view on 01-09; the one on 01-01 is older than 7 days
    categories = compute_category_stats(small_events, CUTOFF)
    assert categories.loc[7].category_n_views == 3 and categories.loc[7].category_n_products == 2
    assert categories.loc[8].category_avg_price == pytest.approx(50.0)


def test_user_product_and_affinity(small_events: pd.DataFrame) -> None:
    pairs = compute_user_product_interactions(small_events, CUTOFF)
    row = pairs.loc[(1, 101)]
    assert (row.up_n_views, row.up_n_carts, row.up_n_purchases) == (1, 1, 1)
    assert row.up_recency_days == pytest.approx(4.5)
    affinity = compute_user_category_affinity(small_events, CUTOFF)
    assert affinity.loc[(1, 7), "affinity"] == pytest.approx(0.8)


def test_ranker_matrix_uses_defaults_for_unknowns_and_derives_features(small_events: pd.DataFrame) -> None:
    tables = compute_feature_tables(small_events, CUTOFF)
    pairs = pd.DataFrame({"user_id": [1, 99, 1], "product_id": [101, 101, 999], "category_id": [7, 7, 8]})
    matrix = build_ranker_matrix(pairs, tables)
    names = list(fd.RANKER_FEATURES)
    assert matrix.shape == (3, len(names)) and matrix.dtype == np.float32
    assert not np.isnan(matrix).any()
    known, unknown_user, new_product = matrix
    assert known[names.index("uc_affinity")] == pytest.approx(0.8)
    assert known[names.index("price_ratio")] == pytest.approx(30 / 30)
    assert known[names.index("up_n_carts")] == 1
    assert unknown_user[names.index("user_n_events")] == 0
    assert unknown_user[names.index("user_recency_days")] == fd.NO_RECENCY_DAYS
    assert unknown_user[names.index("price_ratio")] == 1.0
    # a new product (no row) is scored through its catalogue category
    assert new_product[names.index("product_n_views")] == 0
    assert new_product[names.index("category_n_views")] == 1
    assert new_product[names.index("uc_affinity")] == pytest.approx(0.2)


def test_empty_history_gives_empty_tables_with_the_registry_columns() -> None:
    events = events_frame([("2026-02-01", "view", 1, 1, 1, 1.0, "s")])
    tables = compute_feature_tables(events, CUTOFF)
    assert tables.user_stats.empty
    assert list(tables.user_stats.columns) == [f.name for f in fd.features_of(fd.USER_STATS)]
    matrix = build_ranker_matrix(pd.DataFrame({"user_id": [1], "product_id": [1]}), tables)
    assert matrix[0, list(fd.RANKER_FEATURES).index("product_trend")] == 1.0


def test_registry_names_are_unique_and_views_known() -> None:
    names = [f.name for f in fd.FEATURES]
    assert len(names) == len(set(names))
    assert {f.view for f in fd.FEATURES} <= {*fd.VIEWS, fd.DERIVED}
    assert all(f.default is not None for f in fd.FEATURES if f.model_input)


def test_user_and_pair_rows_depend_only_on_the_users_own_events() -> None:
    # given a generated shop and a third of its users
    from shared.data_generator import GeneratorConfig, generate

    events = validate_events(generate(GeneratorConfig(n_users=300, n_products=120, days=14, seed=5)).events).events
    cutoff = pd.Timestamp("2026-10-12", tz="UTC")
    users = np.sort(events["user_id"].unique())[::3]
    # when the tables are computed for those users only
    tables = compute_feature_tables(events, cutoff, users=users.tolist())
    # then their user and pair rows are the full tables' rows of those users (what `recsys evaluate` relies on),
    # and products and categories are the full tables
    full = compute_feature_tables(events, cutoff)
    assert len(tables.user_stats) > 50
    pd.testing.assert_frame_equal(tables.user_stats, full.user_stats[full.user_stats.index.isin(users)])
    pairs = full.user_product_interactions
    pd.testing.assert_frame_equal(
        tables.user_product_interactions, pairs[pairs.index.get_level_values("user_id").isin(users)]
    )
    pd.testing.assert_frame_equal(tables.product_stats, full.product_stats)
    pd.testing.assert_frame_equal(tables.category_stats, full.category_stats)


def test_events_before_and_from_split_a_sorted_log_into_slices() -> None:
    from shared.feature_computation import events_before, events_from

    times = pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-02", "2026-01-03"], utc=True)
    log = pd.DataFrame({"event_time": times, "x": [1, 2, 3, 4]})
    for cutoff in ("2026-01-02", "2026-01-02 00:00:01", "2025-01-01", "2027-01-01"):
        stamp = pd.Timestamp(cutoff, tz="UTC")
        pd.testing.assert_frame_equal(events_before(log, cutoff), log[log["event_time"] < stamp])
        pd.testing.assert_frame_equal(events_from(log, cutoff), log[log["event_time"] >= stamp])
    shuffled = log.iloc[[2, 0, 3, 1]]  # unsorted: filtered the same way
    pd.testing.assert_frame_equal(events_before(shuffled, "2026-01-02"), shuffled.iloc[[1]])
