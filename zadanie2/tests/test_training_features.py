"""Training through Feast: the point-in-time lookup equals the shared functions for the same rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared import feature_definitions as fd
from shared.errors import UserInputError
from shared.feature_computation import assemble_ranker_matrix, compute_feature_tables, joined_feature_columns
from zadanie2.tests.conftest import BuiltStore
from zadanie2.training_features import feast_feature_lookup


def entity_rows(store: BuiltStore, cutoff: pd.Timestamp, n: int, seed: int) -> pd.DataFrame:
    """Random (user, product) rows at ``cutoff`` incl. unknown users/products, given and missing categories."""
    rng = np.random.default_rng(seed)
    events = store.offline.events
    users = np.append(rng.choice(events["user_id"].unique(), n - 2), [999_001, 999_002])
    products = np.append(rng.choice(events["product_id"].unique(), n - 3), [888_001, 888_002, 888_003])
    categories = pd.array(rng.choice([10, 11, 12, 13], n), dtype="Int64")
    categories[: n // 5] = pd.NA  # catalogue category unknown for some rows
    categories[-2] = 12  # a product never seen before, known from the catalogue
    rows = pd.DataFrame(
        {
            "user_id": users,
            "product_id": rng.permutation(products),
            "category_id": categories,
            "event_timestamp": cutoff,
        }
    )
    rows.index = rng.permutation(np.arange(100, 100 + n))  # an arbitrary index must not matter
    return rows


@pytest.mark.parametrize("cutoff_position", [0, 3, -1])
def test_feast_lookup_equals_shared_functions_at_snapshot_cutoffs(
    sqlite_store: BuiltStore, cutoff_position: int
) -> None:
    # given rows at a snapshot cutoff (daily ones and the final data-end snapshot)
    cutoff = sqlite_store.offline.report.cutoffs[cutoff_position]
    rows = entity_rows(sqlite_store, cutoff, 300, seed=cutoff_position + 5)
    # when looked up through Feast and directly with the shared functions
    got = feast_feature_lookup(sqlite_store.store)(rows)
    want = joined_feature_columns(rows, compute_feature_tables(sqlite_store.offline.events, cutoff))
    # then the same columns with identical values (float tolerance 1e-6), in row order
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-6, equal_nan=True, err_msg=name)
    matrix_feast = assemble_ranker_matrix(got, len(rows))
    matrix_direct = assemble_ranker_matrix(want, len(rows))
    np.testing.assert_allclose(matrix_feast, matrix_direct, atol=1e-6)
    assert matrix_feast.shape == (len(rows), len(fd.RANKER_FEATURES))


def test_point_in_time_join_uses_the_latest_snapshot_before_the_row(sqlite_store: BuiltStore) -> None:
    # given a row between two daily cutoffs
    cutoffs = sqlite_store.offline.report.cutoffs
    between = cutoffs[2] + pd.Timedelta(hours=5)
    rows = entity_rows(sqlite_store, between, 50, seed=1)
    got = feast_feature_lookup(sqlite_store.store)(rows)
    # then the values are those of the snapshot at the earlier cutoff (no leakage from later events)
    want = joined_feature_columns(rows, compute_feature_tables(sqlite_store.offline.events, cutoffs[2]))
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6, equal_nan=True, err_msg=name)


def test_lookup_accepts_settings_and_rows_without_category(sqlite_store: BuiltStore) -> None:
    rows = entity_rows(sqlite_store, sqlite_store.data_end, 40, seed=2).drop(columns="category_id")
    got = feast_feature_lookup(sqlite_store.settings)(rows)
    want = joined_feature_columns(rows, compute_feature_tables(sqlite_store.offline.events, sqlite_store.data_end))
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6, equal_nan=True, err_msg=name)


def test_timestamps_outside_the_snapshots_are_a_user_error(sqlite_store: BuiltStore) -> None:
    # Feast would answer NaN (before the first snapshot) or stale rows (after the data end) silently
    lookup = feast_feature_lookup(sqlite_store.store)
    first = sqlite_store.offline.report.cutoffs[0]
    for stamp in (first - pd.Timedelta(days=1), sqlite_store.data_end + pd.Timedelta(days=1)):
        with pytest.raises(UserInputError, match="recsys features build"):
            lookup(entity_rows(sqlite_store, stamp, 10, seed=3))


def test_lookup_without_timestamps_is_a_user_error(sqlite_store: BuiltStore) -> None:
    with pytest.raises(UserInputError, match="event_timestamp"):
        feast_feature_lookup(sqlite_store.store)(pd.DataFrame({"user_id": [1], "product_id": [100]}))


def _store_on(events: pd.DataFrame, folder: Path, *, project: str, freq: str = "1D") -> tuple[Any, Any]:
    """A Feast store (SQLite online, nothing materialized) applied over snapshots of ``events`` in ``folder``."""
    from zadanie2.feature_store_config import open_feature_store
    from zadanie2.materialization import apply_feature_repo
    from zadanie2.offline_snapshots import build_snapshots
    from zadanie2.settings import load_settings

    report = build_snapshots(events, folder / "offline", freq=freq)
    settings = load_settings(
        project=project,
        repo_path=folder / "repo",
        online_store="sqlite",
        features_dir=folder,
        offline_dir=folder / "offline",
        events_path=folder / "unused.parquet",
    )
    store = open_feature_store(settings)
    apply_feature_repo(settings, store)
    return store, report


def test_category_ids_above_2_pow_53_are_joined_exactly(tmp_path: Path) -> None:
    # given REES46-sized category ids (~2e18: neighbours collapse to one float64)
    from zadanie2.tests.conftest import make_events

    events = make_events(n_events=400, seed=11)
    big = 2053902111092659954
    events["category_id"] = (events["category_id"].astype("Int64") - 10) + big  # big, big+1, big+2, big+3
    store, report = _store_on(events, tmp_path, project="big_ids")
    tables = compute_feature_tables(events, report.data_end)
    products = tables.product_stats.index.to_numpy()
    rows = pd.DataFrame({"user_id": 1, "product_id": products, "event_timestamp": report.data_end})
    # when looked up through Feast (no catalogue category: the stored one must be used, exactly)
    got = feast_feature_lookup(store)(rows)
    # then every row has its own category's stats (an exact int64 join as the reference)
    exact = tables.category_stats.reindex(tables.product_stats["product_category_id"].to_numpy())
    for spec in fd.features_of(fd.CATEGORY_STATS):
        np.testing.assert_allclose(got[spec.name], exact[spec.name].to_numpy("float64"), atol=1e-6, err_msg=spec.name)
    has_category = tables.product_stats["product_category_id"].to_numpy() >= 0
    assert not np.isnan(got["category_n_views"][has_category]).any()


def test_sparse_snapshots_answer_at_their_cutoffs_and_refuse_between_them(tmp_path: Path) -> None:
    # given snapshots every 3 days counted back from the data end (what `recsys run` builds for training)
    from zadanie2.tests.conftest import make_events

    events = make_events(n_events=400, seed=12)
    store, report = _store_on(events, tmp_path, project="sparse", freq="3D")
    lookup = feast_feature_lookup(store)
    cutoff = report.cutoffs[-2]
    users = events["user_id"].unique()[:20]
    rows = pd.DataFrame({"user_id": users, "product_id": events["product_id"].iloc[0], "event_timestamp": cutoff})
    # when looked up at a snapshot cutoff, the values are the shared functions' at that cutoff
    got = lookup(rows)
    want = joined_feature_columns(rows, compute_feature_tables(events, cutoff))
    np.testing.assert_allclose(got["user_n_events"], want["user_n_events"], equal_nan=True)
    # and a day later (between two sparse snapshots: Feast would answer features days old) it is refused
    with pytest.raises(UserInputError, match="no offline snapshot at"):
        lookup(rows.assign(event_timestamp=cutoff + pd.Timedelta(days=1)))
