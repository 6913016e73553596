"""Real-time updates: a pushed event changes the user's online row to exactly the offline recomputation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from shared import feature_definitions as fd
from shared.feature_computation import compute_user_product_interactions, compute_user_stats
from zadanie2.offline_snapshots import build_snapshots, load_offline_events, snapshot_file_name
from zadanie2.online_feature_reader import create_feature_reader
from zadanie2.realtime_updates import RealtimeFeatureUpdater
from zadanie2.tests.conftest import BuiltStore


def assert_row_equal(online: dict, offline: pd.Series) -> None:  # type: ignore[type-arg]
    for spec in fd.features_of(fd.USER_STATS):
        got, want = online[spec.name], offline[spec.name]
        if spec.dtype.endswith("_list"):
            assert len(got) == len(want), spec.name
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=spec.name)
        else:
            assert got == pytest.approx(float(want), abs=1e-6), spec.name


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_pushed_events_update_online_rows_to_the_offline_recomputation(
    fresh_store: Callable[[str], BuiltStore], kind: str
) -> None:
    # given a materialized store and a known user
    store = fresh_store(kind)
    reader = create_feature_reader(store.settings)
    user_id = int(store.offline.events["user_id"].iloc[0])
    before = reader.read_user(user_id)
    assert before is not None
    # when a cart and a purchase of a product the user never touched arrive after materialization
    now = pd.Timestamp.now(tz="UTC")
    records = [
        {
            "event_time": now - pd.Timedelta(seconds=2),
            "event_type": "cart",
            "user_id": user_id,
            "product_id": 950,
            "category_id": 11,
            "price": 42.0,
            "user_session": "rt-1",
        },
        {
            "event_time": now - pd.Timedelta(seconds=1),
            "event_type": "purchase",
            "user_id": user_id,
            "product_id": 950,
            "category_id": 11,
            "price": 42.0,
            "user_session": "rt-1",
        },
    ]
    report = RealtimeFeatureUpdater(store.settings, store.store).apply_records(records)
    assert report is not None and report.users == [user_id]
    # then the online row equals the shared functions over (stored + new events) as of the update time
    after = reader.read_user(user_id)
    assert after is not None
    all_events = load_offline_events(store.settings.paths()["events"], store.settings.paths()["realtime_event_log"])
    assert_row_equal(after, compute_user_stats(all_events, report.as_of).loc[user_id])
    assert after["user_n_purchases"] == before["user_n_purchases"] + 1
    assert after["user_purchased_product_ids"][0] == 950 and after["user_recent_product_ids"][0] == 950
    # and the user's pair rows too, including the new pair
    pairs = compute_user_product_interactions(all_events, report.as_of).loc[user_id]
    online_pairs = reader.read_user_products(user_id, pairs.index.tolist())
    assert sorted(online_pairs) == sorted(pairs.index.tolist())
    assert online_pairs[950] == {
        "up_n_views": 0,
        "up_n_carts": 1,
        "up_n_purchases": 1,
        "up_recency_days": pytest.approx(float(pairs.loc[950, "up_recency_days"]), abs=1e-6),
    }
    reader.close()


def test_logged_events_reach_the_next_build(fresh_store: Callable[[str], BuiltStore], tmp_path) -> None:  # type: ignore[no-untyped-def]
    # given a pushed view of a new user
    store = fresh_store("sqlite")
    updater = RealtimeFeatureUpdater(store.settings, store.store)
    event_time = store.data_end + pd.Timedelta(hours=1)
    frame = pd.DataFrame(
        [
            {
                "event_time": event_time,
                "event_type": "view",
                "user_id": 424242,
                "product_id": 101,
                "category_id": 11,
                "price": 9.5,
                "user_session": "new",
            }
        ]
    )
    report = updater.apply(frame, as_of=event_time + pd.Timedelta(minutes=1))
    assert create_feature_reader(store.settings).read_user(424242)["user_n_views"] == 1  # type: ignore[index]
    # when the offline snapshots are rebuilt from the batch file + the real-time log
    events = load_offline_events(store.settings.paths()["events"], store.settings.paths()["realtime_event_log"])
    built = build_snapshots(events, tmp_path / "offline")
    # then the final snapshot contains the new user with the same value as served online
    users = pd.read_parquet(tmp_path / "offline" / fd.USER_STATS / snapshot_file_name(built.data_end))
    assert users.set_index("user_id").loc[424242, "user_n_views"] == 1
    assert report.log_file is not None and report.log_file.exists()


def test_successive_updates_get_increasing_timestamps(fresh_store: Callable[[str], BuiltStore]) -> None:
    # Feast ignores online writes that are not newer than the stored row: two pushes in the same
    # microsecond must still both land.
    store = fresh_store("sqlite")
    updater = RealtimeFeatureUpdater(store.settings, store.store)
    user_id = int(store.offline.events["user_id"].iloc[1])
    at = pd.Timestamp.now(tz="UTC").floor("us")
    view = {
        "event_type": "view",
        "user_id": user_id,
        "product_id": 102,
        "category_id": 12,
        "price": 5.0,
        "user_session": "x",
    }
    first = updater.apply(pd.DataFrame([{**view, "event_time": at - pd.Timedelta(seconds=1)}]), as_of=at)
    second = updater.apply(pd.DataFrame([{**view, "event_time": at - pd.Timedelta(milliseconds=500)}]), as_of=at)
    assert second.as_of > first.as_of
    expected = compute_user_stats(
        load_offline_events(store.settings.paths()["events"], store.settings.paths()["realtime_event_log"]),
        second.as_of,
    ).loc[user_id, "user_n_views"]
    assert create_feature_reader(store.settings).read_user(user_id)["user_n_views"] == expected  # type: ignore[index]


def test_records_of_other_event_types_are_ignored(fresh_store: Callable[[str], BuiltStore]) -> None:
    # the service may forward impressions/clicks too; no feature counts them
    store = fresh_store("sqlite")
    updater = RealtimeFeatureUpdater(store.settings, store.store)
    record = {"event_type": "impression", "user_id": 1, "product_id": 101}
    assert updater.apply_records([record]) is None
    assert updater.apply_records([]) is None
    mixed = updater.apply_records([record, {**record, "event_type": "view"}])
    assert mixed is not None and mixed.events == 1
