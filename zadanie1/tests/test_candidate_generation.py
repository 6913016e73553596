"""Candidate sources, merging, persistence and recall."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.errors import UserInputError
from shared.feature_computation import compute_user_stats
from zadanie1.candidate_generation import (
    SOURCES,
    CandidateConfig,
    CandidateIndex,
    candidate_recall,
    session_codes,
)
from zadanie1.tests.conftest import make_events

CUTOFF = pd.Timestamp("2026-03-01", tz="UTC")


def session_events() -> pd.DataFrame:
    """Given: product 1 is seen with 2 in three sessions, with 3 in one session; 4..6 are popular elsewhere."""
    rows = []
    for s, (a, b) in enumerate([(1, 2), (1, 2), (2, 1), (1, 3)]):
        rows += [
            ("2026-02-27 10:00:00", "view", a, 100, s, f"s{s}"),
            ("2026-02-27 10:01:00", "view", b, 100 if b != 3 else 200, s, f"s{s}"),
        ]
    for u in range(10):
        rows += [("2026-02-28 10:00:00", "view", 4 + u % 3, 300, 50 + u, f"p{u}")]
    return make_events(rows)


def test_covisitation_ranks_products_seen_together_more_often_first() -> None:
    index = CandidateIndex.build(session_events(), CUTOFF)
    ids, scores = index.similar(1)
    assert ids.tolist()[:2] == [2, 3]
    assert scores[0] == pytest.approx(1.0)  # normalised to the best neighbour
    assert 0 < scores[1] < 1


def test_events_at_or_after_the_cutoff_do_not_change_the_index() -> None:
    events = session_events()
    late = make_events([("2026-03-01 00:00:00", "view", 1, 100, 1, "late"), ("2026-03-02", "view", 3, 200, 1, "late")])
    before = CandidateIndex.build(events, CUTOFF)
    after = CandidateIndex.build(pd.concat([events, late], ignore_index=True), CUTOFF)
    assert before.similar(1)[0].tolist() == after.similar(1)[0].tolist()
    assert before.popularity.top(5) == after.popularity.top(5)


def test_sessions_are_derived_from_time_gaps_when_the_session_column_is_missing() -> None:
    events = make_events(
        [
            ("2026-02-27 10:00:00", "view", 1, 1, 7),
            ("2026-02-27 10:10:00", "view", 2, 1, 7),  # 10 min later: same session
            ("2026-02-27 12:00:00", "view", 3, 1, 7),  # 110 min later: new session
            ("2026-02-27 10:05:00", "view", 4, 1, 8),  # another user
        ],
        columns=("event_time", "event_type", "product_id", "category_id", "user_id"),
    )
    codes = pd.Series(session_codes(events, gap_minutes=30), index=events["product_id"])
    assert codes[1] == codes[2]
    assert codes[3] != codes[1]
    assert codes[4] not in (codes[1], codes[3])


def test_merged_candidates_are_distinct_tagged_capped_and_skip_excluded() -> None:
    index = CandidateIndex.build(session_events(), CUTOFF)
    found = index.candidates([1], [100], 5, exclude=[4])
    ids = [c.product_id for c in found]
    assert len(ids) == len(set(ids)) == 5
    assert 4 not in ids
    assert {c.source for c in found} <= set(SOURCES)
    assert found[0].source == "recent" and found[0].product_id == 1
    assert next(c for c in found if c.product_id == 2).source in ("covisitation", "category_popular")


def test_a_single_source_alone_fills_all_slots_it_can() -> None:
    index = CandidateIndex.build(session_events(), CUTOFF)
    popular = index.candidates([], [], 4, sources=("popular",))
    assert [c.product_id for c in popular] == index.popularity.top(4)
    assert {c.source for c in popular} == {"popular"}


def test_context_category_and_session_products_drive_candidates_for_a_new_user() -> None:
    index = CandidateIndex.build(session_events(), CUTOFF)
    found = index.candidates([], [], 10, context_product_ids=[2], context_category_id=300)
    sources = {c.product_id: c.source for c in found}
    assert sources[2] == "recent"  # the session's own product
    assert sources[1] == "covisitation"  # seen with 2 in three sessions
    assert {sources[p] for p in (4, 5, 6)} == {"category_popular"}  # the category page


def test_save_and_load_give_the_same_candidates_and_popularity(tmp_path: Path, small_events: pd.DataFrame) -> None:
    cutoff = pd.Timestamp("2026-10-15", tz="UTC")
    index = CandidateIndex.build(small_events, cutoff, CandidateConfig(neighbors_per_product=15))
    index.save(tmp_path / "candidates")
    loaded = CandidateIndex.load(tmp_path / "candidates")
    stats = compute_user_stats(small_events, cutoff)
    for user in stats.index[:20]:
        row = stats.loc[user]
        args = (row.user_recent_product_ids, row.user_top_category_ids, 40)
        assert index.candidates(*args) == loaded.candidates(*args)
    assert loaded.popularity.top(10) == index.popularity.top(10)
    assert loaded.popularity.trending(10) == index.popularity.trending(10)
    assert loaded.config == index.config
    assert loaded.cutoff == index.cutoff
    assert not list((tmp_path / "candidates").glob("*.pkl"))


def test_loading_a_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not found"):
        CandidateIndex.load(tmp_path / "nope")


def test_recall_counts_relevant_pairs_found_by_each_source() -> None:
    events = session_events()
    index = CandidateIndex.build(events, CUTOFF)
    stats = compute_user_stats(events, CUTOFF)
    # user 0 (session s0: 1, 2) later touches 3 (co-visited with 1) and 99 (unknown product)
    rows = {r.source: r for r in candidate_recall(index, stats, {0: {3, 99}, 12345: {1}}, n=10)}
    assert rows["merged"].relevant_pairs == 2  # the cold user 12345 is skipped
    assert rows["merged"].n_users == 1
    assert rows["covisitation"].hits == 1
    assert rows["merged"].recall == pytest.approx(0.5)
    assert rows["recent"].hits == 0
    assert sum(rows[f"merged:{s}"].hits for s in SOURCES) == rows["merged"].hits


def test_categories_of_is_vectorised_with_minus_one_for_unknown() -> None:
    index = CandidateIndex.build(session_events(), CUTOFF)
    assert index.categories_of(np.array([1, 3, 999])).tolist() == [100, 200, -1]


def _pandas_reference_neighbors(events: pd.DataFrame, cutoff: pd.Timestamp, config: CandidateConfig):
    """The in-memory pandas counting the DuckDB query replaced (weights summed in the same integer unit)."""
    from shared import column_names as col
    from shared.feature_computation import DAY, events_before
    from zadanie1.candidate_generation import COVISIT_EVENT_WEIGHTS, WEIGHT_QUANTUM

    events = events_before(events, cutoff)
    frame = pd.DataFrame(
        {
            "s": session_codes(events, config.session_gap_minutes),
            "p": events[col.PRODUCT_ID].to_numpy(dtype=np.int64),
            "t": np.asarray(events[col.EVENT_TIME].dt.as_unit("ns").array.asi8, dtype=np.int64),
            "w": events[col.EVENT_TYPE].astype(str).map(COVISIT_EVENT_WEIGHTS).fillna(1.0).to_numpy(np.float64),
        }
    )
    items = frame.groupby(["s", "p"], sort=False).agg(t=("t", "max"), w=("w", "max")).reset_index()
    items = items.sort_values(["s", "t"], ascending=[True, False], kind="stable")
    items = items[items.groupby("s", sort=False).cumcount() < config.max_session_products]
    session_time = items.groupby("s", sort=False)["t"].transform("max").to_numpy()
    items = items.assign(decay=np.power(0.5, (cutoff.value - session_time) / DAY.value / config.half_life_days))
    items = items[items.groupby("s", sort=False)["p"].transform("size").to_numpy() >= 2]
    left = items[["s", "p", "decay"]].rename(columns={"p": "a"})
    right = items[["s", "p", "w"]].rename(columns={"p": "b"})
    pairs = left.merge(right, on="s", sort=False)
    pairs = pairs[pairs["a"].to_numpy() != pairs["b"].to_numpy()]
    quanta = np.round(pairs["decay"].to_numpy() * pairs["w"].to_numpy() / WEIGHT_QUANTUM).astype(np.int64)
    table = pd.Series(quanta).groupby([pairs["a"].to_numpy(), pairs["b"].to_numpy()]).sum().rename("q").reset_index()
    table.columns = ["a", "b", "q"]
    table = table.sort_values(["a", "q", "b"], ascending=[True, False, True], kind="stable")
    table = table[table.groupby("a", sort=False).cumcount() < config.neighbors_per_product]
    best = table.groupby("a", sort=False)["q"].transform("max").to_numpy()
    keys, counts = np.unique(table["a"].to_numpy(), return_counts=True)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return keys, ptr, table["b"].to_numpy(), (table["q"].to_numpy() / best).astype(np.float32)


@pytest.mark.parametrize("neighbors", [40, 3])
def test_duckdb_covisitation_equals_the_pandas_counting(small_events: pd.DataFrame, neighbors: int) -> None:
    from zadanie1.candidate_generation import covisitation_neighbors

    # given a generated shop (sessions with ties in time, carts and purchases) and a cutoff inside it
    cutoff = pd.Timestamp("2026-10-15", tz="UTC")
    config = CandidateConfig(neighbors_per_product=neighbors, max_session_products=6)
    # when both count co-visitation
    expected = _pandas_reference_neighbors(small_events, cutoff, config)
    actual = covisitation_neighbors(small_events[small_events["event_time"] < cutoff], cutoff, config)
    # then keys, offsets, neighbours and their order are identical, and scores equal
    assert len(expected[2]) > 500
    for got, want in zip(actual[:3], expected[:3], strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(actual[3], expected[3], rtol=1e-6)
