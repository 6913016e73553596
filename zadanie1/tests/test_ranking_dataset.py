"""Labels, negative sampling and the absence of leakage in the ranking dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared import column_names as col
from shared import feature_definitions as fd
from shared.feature_computation import compute_feature_tables, joined_feature_columns
from zadanie1.candidate_generation import CandidateIndex
from zadanie1.ranking_dataset import (
    DatasetConfig,
    build_ranking_dataset,
    direct_feature_lookup,
    sample_negatives,
    window_relevance,
)
from zadanie1.tests.conftest import make_events

CUTOFF = pd.Timestamp("2026-10-12", tz="UTC")
LABEL_END = pd.Timestamp("2026-10-16", tz="UTC")


def build(events: pd.DataFrame, *, sample: bool, lookup=None, **config: object):
    tables = compute_feature_tables(events, CUTOFF)
    index = CandidateIndex.build(events, CUTOFF)
    return build_ranking_dataset(
        events,
        CUTOFF,
        LABEL_END,
        candidate_index=index,
        user_stats=tables.user_stats,
        feature_lookup=lookup or direct_feature_lookup(tables),
        config=DatasetConfig(n_candidates=40, **config),  # type: ignore[arg-type]
        sample=sample,
    )


@pytest.fixture(scope="module")
def full_dataset(small_events: pd.DataFrame):
    return build(small_events, sample=False)


def test_relevance_is_the_strongest_event_in_the_window_only() -> None:
    events = make_events(
        [
            ("2026-10-11 09:00:00", "purchase", 1, 1, 5, "a"),  # before the window: ignored
            ("2026-10-12 09:00:00", "view", 1, 1, 5, "b"),
            ("2026-10-12 09:01:00", "cart", 2, 1, 5, "b"),
            ("2026-10-12 09:02:00", "view", 2, 1, 5, "b"),
            ("2026-10-13 09:02:00", "purchase", 3, 1, 5, "c"),
            ("2026-10-14 09:02:00", "remove_from_cart", 4, 1, 5, "c"),
            ("2026-10-16 00:00:00", "purchase", 5, 1, 5, "d"),  # at label_end: ignored
        ]
    )
    labels = window_relevance(events, CUTOFF, LABEL_END)
    assert dict(zip(labels[col.PRODUCT_ID], labels["relevance"], strict=True)) == {1: 1, 2: 2, 3: 3, 4: 1}


def test_no_leakage_events_after_the_cutoff_change_labels_but_never_features(
    small_events: pd.DataFrame, full_dataset
) -> None:
    # Given the same history but a different future
    before = small_events[small_events[col.EVENT_TIME] < CUTOFF]
    after = small_events[small_events[col.EVENT_TIME] >= CUTOFF]
    shuffled_future = after.assign(product_id=np.roll(after[col.PRODUCT_ID].to_numpy(), 17))
    real = full_dataset
    other = build(pd.concat([before, shuffled_future], ignore_index=True), sample=False)
    # Then the users with labels differ only through the future, and per (user, product) features are equal
    merged = real.rows.reset_index().merge(
        other.rows.reset_index(), on=[col.USER_ID, col.PRODUCT_ID], suffixes=("_real", "_other")
    )
    assert len(merged) > 100
    np.testing.assert_array_equal(real.matrix[merged["index_real"]], other.matrix[merged["index_other"]])
    assert (merged["label_real"] != merged["label_other"]).any()


def test_every_label_comes_from_the_window_and_every_user_had_history(small_events: pd.DataFrame, full_dataset) -> None:
    dataset = full_dataset
    history_users = set(small_events.loc[small_events[col.EVENT_TIME] < CUTOFF, col.USER_ID])
    assert set(dataset.rows[col.USER_ID]) <= history_users
    window = window_relevance(small_events, CUTOFF, LABEL_END)
    positives = set(map(tuple, window[[col.USER_ID, col.PRODUCT_ID]].to_numpy().tolist()))
    rows = dataset.rows[dataset.rows["label"] == 1]
    assert set(map(tuple, rows[[col.USER_ID, col.PRODUCT_ID]].to_numpy().tolist())) <= positives
    # every user's relevant set holds all the window's products, found by the candidates or not
    for user in dataset.users[:20]:
        assert dataset.relevant[int(user)] == set(window.loc[window[col.USER_ID] == user, col.PRODUCT_ID])


def test_negative_sampling_keeps_all_positives_and_the_quota_of_negatives() -> None:
    rows = pd.DataFrame({col.USER_ID: [1] * 10 + [2] * 30, "label": [1, 1] + [0] * 8 + [1] + [0] * 29})
    keep = sample_negatives(rows, negatives_per_positive=2.0, min_negatives=5, seed=3)
    kept = rows[keep]
    assert kept["label"].sum() == 3
    assert ((kept[col.USER_ID] == 1) & (kept["label"] == 0)).sum() == 5  # max(2 * 2, 5)
    assert ((kept[col.USER_ID] == 2) & (kept["label"] == 0)).sum() == 5  # max(2 * 1, 5)
    assert keep.tolist() == sample_negatives(rows, 2.0, 5, seed=3).tolist()  # seeded


def test_sampled_training_set_has_fewer_negatives_than_the_full_one(small_events: pd.DataFrame, full_dataset) -> None:
    full = full_dataset
    sampled = build(small_events, sample=True, negatives_per_positive=1.0, min_negatives=2)
    assert sampled.group_sizes.sum() == len(sampled)
    assert len(sampled.users) == len(set(sampled.rows[col.USER_ID]))
    assert sampled.labels.sum() == full.labels.sum()
    assert len(sampled) < len(full)
    assert sampled.matrix.shape == (len(sampled), len(fd.RANKER_FEATURES))


def test_an_injected_feature_lookup_gets_cutoff_timestamps_and_feeds_the_matrix(small_events: pd.DataFrame) -> None:
    tables = compute_feature_tables(small_events, CUTOFF)
    seen: list[pd.DataFrame] = []

    def lookup(entity_rows: pd.DataFrame) -> dict[str, np.ndarray]:
        seen.append(entity_rows.copy())
        columns = joined_feature_columns(entity_rows, tables)
        columns["product_n_views"] = np.full(len(entity_rows), 7.0)
        return columns

    dataset = build(small_events, sample=False, lookup=lookup)
    assert list(seen[0].columns) == [col.USER_ID, col.PRODUCT_ID, col.CATEGORY_ID, col.EVENT_TIMESTAMP]
    assert (pd.to_datetime(seen[0][col.EVENT_TIMESTAMP], utc=True) == CUTOFF).all()
    assert (dataset.matrix[:, fd.RANKER_FEATURES.index("product_n_views")] == 7.0).all()


def test_the_direct_lookup_refuses_other_timestamps(small_events: pd.DataFrame) -> None:
    lookup = direct_feature_lookup(compute_feature_tables(small_events, CUTOFF))
    entity = pd.DataFrame({col.USER_ID: [1], col.PRODUCT_ID: [2], col.CATEGORY_ID: [3]})
    entity[col.EVENT_TIMESTAMP] = CUTOFF + pd.Timedelta(days=1)
    with pytest.raises(ValueError, match="cutoff"):
        lookup(entity)


def test_the_written_evaluation_set_is_what_the_registry_gate_reads(full_dataset, tmp_path) -> None:
    from zadanie1.training_pipeline import write_evaluation_set
    from zadanie3.evaluation_set import load_evaluation_set

    path = tmp_path / "eval_set.parquet"
    write_evaluation_set(full_dataset, path)
    loaded = load_evaluation_set(path)
    assert len(loaded) == len(full_dataset.rows)
    np.testing.assert_array_equal(loaded.labels, full_dataset.labels)
    np.testing.assert_allclose(loaded.features, full_dataset.matrix.astype(np.float32), equal_nan=True)
    # one ranked list per user, all as of the cutoff
    assert loaded.summary()["queries"] == full_dataset.rows[col.USER_ID].nunique()
