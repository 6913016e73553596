"""Behaviour of the synthetic shop: schema, determinism, realism and learnability of its events."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared import column_names as col
from shared.data_generator import (
    SECOND,
    GeneratedData,
    GeneratorConfig,
    GroundTruth,
    generate,
    position_bias,
    write_events,
)
from shared.event_loader import load_events, validate_events

SMALL = GeneratorConfig(n_users=300, n_products=200, days=10, seed=3)
DAY_NS = 86_400 * SECOND


@pytest.fixture(scope="module")
def default_data() -> GeneratedData:
    return generate(GeneratorConfig())


def _ns(series: pd.Series) -> np.ndarray:
    return series.dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64)


# ---- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_events_and_files(tmp_path: Path) -> None:
    # given two runs with one config
    first, second = generate(SMALL), generate(SMALL)
    # then the frames, the ground truth and the written files are identical
    pd.testing.assert_frame_equal(first.events, second.events)
    np.testing.assert_array_equal(first.ground_truth.user_taste, second.ground_truth.user_taste)
    paths = [write_events(data.events, tmp_path / run / "events.csv.gz") for run, data in (("a", first), ("b", second))]
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_different_seed_gives_different_events() -> None:
    other = generate(GeneratorConfig(n_users=300, n_products=200, days=10, seed=4))
    assert not generate(SMALL).events.equals(other.events)


# ---- schema -------------------------------------------------------------------------------------


def test_events_follow_the_rees46_schema(default_data: GeneratedData) -> None:
    events = default_data.events
    assert tuple(events.columns) == col.ALL_COLUMNS
    assert str(events[col.EVENT_TIME].dtype) == "datetime64[ns, UTC]"
    assert list(events[col.EVENT_TYPE].cat.categories) == list(col.EVENT_TYPES)
    for name in (col.PRODUCT_ID, col.CATEGORY_ID, col.USER_ID):
        assert events[name].dtype == np.int64
    assert events[col.PRICE].dtype == np.float32
    assert (events[col.PRICE] > 0).all()
    for name in (col.CATEGORY_CODE, col.BRAND, col.USER_SESSION):
        assert events[name].dtype == "string"
        assert events[name].notna().all()
    assert events[col.CATEGORY_CODE].str.fullmatch(r"[a-z_]+(\.[a-z_]+)+").all()
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert events[col.USER_SESSION].str.fullmatch(uuid.pattern).all()
    # one category per product, REES46-like category ids
    assert (events.groupby(col.PRODUCT_ID)[col.CATEGORY_ID].nunique() == 1).all()
    assert (events[col.CATEGORY_ID] > 2 * 10**18).all()
    # time-sorted, whole seconds, inside the period
    times = _ns(events[col.EVENT_TIME])
    gt = default_data.ground_truth
    assert (np.diff(times) >= 0).all() and (times % SECOND == 0).all()
    assert times.min() >= gt.period_start_ns and times.max() < gt.period_end_ns


def test_shared_loader_keeps_every_generated_row(default_data: GeneratedData) -> None:
    loaded = validate_events(default_data.events)
    assert loaded.summary.rows_kept == len(default_data.events)
    assert not loaded.summary.dropped


def test_default_config_gives_150k_to_300k_events(default_data: GeneratedData) -> None:
    assert 150_000 <= len(default_data.events) <= 300_000
    assert default_data.events[col.USER_ID].nunique() == GeneratorConfig().n_users


@pytest.mark.parametrize("name", ["events.parquet", "events.csv", "events.csv.gz"])
def test_written_file_loads_back_equal(tmp_path: Path, name: str) -> None:
    events = generate(SMALL).events
    path = write_events(events, tmp_path / name)
    loaded = load_events(path).events
    loaded[col.CATEGORY_ID] = loaded[col.CATEGORY_ID].astype("int64")  # the loader's column is nullable
    pd.testing.assert_frame_equal(loaded, events)


def test_csv_uses_the_kaggle_time_format(tmp_path: Path) -> None:
    path = write_events(generate(SMALL).events, tmp_path / "events.csv")
    header, first = path.read_text().splitlines()[:2]
    assert header == ",".join(col.ALL_COLUMNS)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC,", first)


def test_unsupported_file_suffix_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        write_events(generate(SMALL).events, tmp_path / "events.json")


# ---- behaviour ----------------------------------------------------------------------------------


def test_funnel_rates_are_realistic(default_data: GeneratedData) -> None:
    counts = default_data.events[col.EVENT_TYPE].value_counts()
    cart_per_view = counts[col.CART] / counts[col.VIEW]
    purchase_per_cart = counts[col.PURCHASE] / counts[col.CART]
    remove_per_cart = counts[col.REMOVE_FROM_CART] / counts[col.CART]
    assert 0.05 <= cart_per_view <= 0.10
    assert 0.30 <= purchase_per_cart <= 0.50
    assert 0.10 <= remove_per_cart <= 0.35


def test_every_purchase_and_removal_follows_a_cart_in_its_session(default_data: GeneratedData) -> None:
    events = default_data.events
    key = [col.USER_SESSION, col.PRODUCT_ID]
    first_cart = events[events[col.EVENT_TYPE] == col.CART].groupby(key)[col.EVENT_TIME].min()
    for kind in (col.PURCHASE, col.REMOVE_FROM_CART):
        later = events[events[col.EVENT_TYPE] == kind].groupby(key)[col.EVENT_TIME].min()
        cart_time = first_cart.reindex(later.index)
        assert cart_time.notna().all()
        assert (later > cart_time).all()


def test_sessions_have_a_few_to_tens_of_events(default_data: GeneratedData) -> None:
    sizes = default_data.events.groupby(col.USER_SESSION).size()
    assert 4 <= sizes.mean() <= 15
    assert sizes.quantile(0.99) >= 20
    per_user = default_data.events.groupby(col.USER_ID)[col.USER_SESSION].nunique()
    assert per_user.mean() >= 4


def test_traffic_peaks_in_the_evening_and_varies_by_weekday(default_data: GeneratedData) -> None:
    local = default_data.events[col.EVENT_TIME] + pd.Timedelta(hours=GeneratorConfig().timezone_offset_hours)
    by_hour = local.dt.hour.value_counts()
    assert by_hour.loc[[18, 19, 20, 21]].sum() > 3 * by_hour.loc[[2, 3, 4, 5]].sum()
    by_day = local.dt.dayofweek.value_counts()
    assert by_day.max() / by_day.min() > 1.1


def test_new_users_first_visit_inside_the_period(default_data: GeneratedData) -> None:
    gt, events, config = default_data.ground_truth, default_data.events, GeneratorConfig()
    new = gt.new_user_ids()
    assert new.size == round(config.new_user_share * config.n_users)
    assert gt.future_user_ids().size == config.n_future_users
    first_event = events.groupby(col.USER_ID)[col.EVENT_TIME].min()
    # a new user's first event is exactly their first visit, after day 0
    first_seen = pd.Series(gt.user_first_seen_ns, index=gt.user_ids)
    new_first = _ns(first_event.loc[new])
    assert (new_first == first_seen.loc[new].to_numpy()).all()
    assert (new_first >= gt.period_start_ns + DAY_NS).all()
    # warm users may also first show up later (they just did not visit on day 0)
    assert (_ns(first_event) >= gt.period_start_ns + DAY_NS).mean() >= config.new_user_share
    # future users exist only in the ground truth and arrive after the period
    assert not events[col.USER_ID].isin(gt.future_user_ids()).any()
    assert (first_seen.loc[gt.future_user_ids()] >= gt.period_end_ns).all()


def test_new_products_have_no_events_before_release(default_data: GeneratedData) -> None:
    gt, events, config = default_data.ground_truth, default_data.events, GeneratorConfig()
    new = gt.new_product_ids()
    assert new.size == round(config.new_product_share * config.n_products)
    assert gt.future_product_ids().size == config.n_future_products
    release = pd.Series(gt.product_release_ns, index=gt.product_ids)
    assert (release.loc[new] >= gt.period_start_ns + DAY_NS).all()
    assert (release.loc[new] < gt.period_end_ns).all()
    first_event = events.groupby(col.PRODUCT_ID)[col.EVENT_TIME].min()
    assert (_ns(first_event) >= release.loc[first_event.index].to_numpy()).all()
    assert events[col.PRODUCT_ID].isin(new).mean() > 0.03  # new products do get traffic
    assert not events[col.PRODUCT_ID].isin(gt.future_product_ids()).any()


def test_product_popularity_is_long_tailed(default_data: GeneratedData) -> None:
    views = default_data.events[default_data.events[col.EVENT_TYPE] == col.VIEW]
    counts = views[col.PRODUCT_ID].value_counts()
    top_decile = counts.iloc[: max(1, counts.size // 10)].sum() / counts.sum()
    assert 0.35 <= top_decile <= 0.85


def test_users_events_concentrate_in_their_top_latent_categories(default_data: GeneratedData) -> None:
    # given each user's three highest-taste leaf categories
    gt, events = default_data.ground_truth, default_data.events
    top3 = np.argsort(-gt.user_taste, axis=1)[:, :3]
    user = gt.user_index(events[col.USER_ID].to_numpy())
    leaf = gt.product_category[gt.product_index(events[col.PRODUCT_ID].to_numpy())]
    # when we measure which share of each user's events falls in them
    in_top = (leaf[:, None] == top3[user]).any(axis=1)
    own_share = pd.Series(in_top).groupby(user).mean().mean()
    global_top3 = events[col.CATEGORY_ID].value_counts(normalize=True).iloc[:3].sum()
    # then tastes are visible in the log and far more specific than global popularity
    assert own_share >= 0.6
    assert own_share >= 2 * global_top3


def test_simple_personalisation_beats_popularity_in_ground_truth_ctr(default_data: GeneratedData) -> None:
    # given lists built from the first 3 weeks: global top-10 vs user's category shares x popularity
    gt, events = default_data.ground_truth, default_data.events
    cutoff = pd.Timestamp(gt.period_start_ns + 21 * DAY_NS, tz="UTC")
    train = events[events[col.EVENT_TIME] < cutoff]
    views = train[train[col.EVENT_TYPE] == col.VIEW]
    popularity = views[col.PRODUCT_ID].value_counts()
    product_ids = popularity.index.to_numpy()
    product_leaf = gt.product_category_ids(product_ids)
    log_pop = np.log(popularity.to_numpy(dtype=float))
    user_leaf = train.groupby([col.USER_ID, col.CATEGORY_ID]).size()
    seen = np.intersect1d(gt.warm_user_ids(), train[col.USER_ID].unique())
    users = np.random.default_rng(0).choice(seen, 300, replace=False)
    bias = position_bias(np.arange(10))
    popular_ctr, personal_ctr = [], []
    for user in users:
        shares = user_leaf.loc[int(user)] / user_leaf.loc[int(user)].sum()
        score = np.log(pd.Series(product_leaf).map(shares).fillna(0.0).to_numpy() + 0.01) + 0.5 * log_pop
        personal = product_ids[np.argsort(-score, kind="stable")[:10]]
        popular_ctr.append(gt.click_probabilities(int(user), product_ids[:10]).sum())
        personal_ctr.append((gt.click_base(int(user), personal) * bias).sum())
    # then the personal lists get clearly more expected clicks (the later A/B test needs +20 %)
    assert np.mean(personal_ctr) >= 1.3 * np.mean(popular_ctr)


# ---- ground truth -------------------------------------------------------------------------------


def test_click_probabilities_are_probabilities_decreasing_with_position(default_data: GeneratedData) -> None:
    gt = default_data.ground_truth
    user = int(gt.warm_user_ids()[0])
    products = gt.product_ids[:50]
    at_top = gt.click_probabilities(user, products, np.zeros(50, dtype=int))
    assert ((at_top >= 0) & (at_top <= 1)).all()
    by_position = np.stack([gt.click_probabilities(user, products, np.full(50, p)) for p in range(20)])
    assert (np.diff(by_position, axis=0) < 0).all()
    assert gt.probability(user, int(products[0]), 3) == pytest.approx(at_top[0] * position_bias(3))
    for p in (gt.cart_probability(user, products), gt.purchase_probability(user, products)):
        assert ((p >= 0) & (p <= 1)).all()
    assert (gt.purchase_probability(user, products) < gt.cart_probability(user, products)).all()


def test_click_model_is_calibrated_for_random_and_best_products(default_data: GeneratedData) -> None:
    gt = default_data.ground_truth
    users = np.random.default_rng(1).choice(gt.warm_user_ids(), 200, replace=False)
    random_ctr = np.mean([gt.click_base(int(u), gt.product_ids).mean() for u in users])
    best_ctr = np.mean([gt.click_base(int(u), gt.best_products(int(u), 1))[0] for u in users])
    cart_given_click = np.mean([gt.cart_probability(int(u), gt.best_products(int(u), 10)).mean() for u in users])
    assert 0.02 <= random_ctr <= 0.08
    assert 0.30 <= best_ctr <= 0.55
    assert 0.03 <= cart_given_click <= 0.25


def test_affinity_is_the_utility_behind_clicks(default_data: GeneratedData) -> None:
    gt = default_data.ground_truth
    user = int(gt.new_user_ids()[0])
    products = gt.product_ids[:100]
    order = np.argsort(gt.affinity(user, products))
    assert (np.diff(gt.click_base(user, products)[order]) >= 0).all()
    best = gt.best_products(user, 5, available_at=pd.Timestamp(gt.period_start_ns, tz="UTC"))
    assert set(best) <= set(gt.warm_product_ids())


def test_ground_truth_save_load_round_trip(default_data: GeneratedData, tmp_path: Path) -> None:
    gt = default_data.ground_truth
    gt.save(tmp_path / "gt")
    loaded = GroundTruth.load(tmp_path / "gt")
    assert loaded.config == gt.config
    assert loaded.category_codes == gt.category_codes and loaded.brand_names == gt.brand_names
    assert (loaded.period_start_ns, loaded.period_end_ns) == (gt.period_start_ns, gt.period_end_ns)
    for name in ("user_ids", "user_taste", "user_brand_affinity", "product_ids", "product_quality", "category_ids"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(gt, name))
    user = int(gt.future_user_ids()[0])
    products = gt.future_product_ids()
    np.testing.assert_array_equal(loaded.click_probabilities(user, products), gt.click_probabilities(user, products))


def test_loading_a_missing_ground_truth_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ground_truth\.npz"):
        GroundTruth.load(tmp_path)


def test_unknown_ids_and_bad_positions_raise_value_error(default_data: GeneratedData) -> None:
    gt = default_data.ground_truth
    user, product = int(gt.user_ids[0]), int(gt.product_ids[0])
    with pytest.raises(ValueError, match=r"unknown user_id .*: 42"):
        gt.probability(42, product, 0)
    with pytest.raises(ValueError, match=r"unknown product_id .*: 7"):
        gt.click_probabilities(user, [product, 7], [0, 1])
    with pytest.raises(ValueError, match="non-negative"):
        gt.click_probabilities(user, [product], [-1])
    with pytest.raises(ValueError, match="shape"):
        gt.click_probabilities(user, [product, product], [0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_products": 50}, "too small"),
        ({"new_user_share": 1.5}, "new_user_share"),
        ({"start": "2026-10-01 12:00"}, "midnight"),
        ({"n_leaf_categories": 200}, "n_leaf_categories"),
    ],
)
def test_invalid_config_is_rejected_with_a_clear_message(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**kwargs)  # type: ignore[arg-type]
