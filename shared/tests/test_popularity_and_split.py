"""Popularity ordering, decay and exclusion; time split without leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.errors import UserInputError
from shared.event_loader import validate_events
from shared.popularity import PopularityModel
from shared.time_split import time_split, train_valid_test_split

CUTOFF = pd.Timestamp("2026-01-31", tz="UTC")


def views(rows: list[tuple[str, int, int]], kind: str = "view") -> pd.DataFrame:
    """rows: (time, product, category)."""
    frame = pd.DataFrame(
        {
            "event_time": [r[0] for r in rows],
            "event_type": kind,
            "product_id": [r[1] for r in rows],
            "category_id": [r[2] for r in rows],
            "user_id": range(len(rows)),
        }
    )
    return validate_events(frame).events


def test_more_events_rank_higher_and_ties_break_by_id() -> None:
    events = views([("2026-01-30", 5, 1), ("2026-01-30", 5, 1), ("2026-01-30", 3, 1), ("2026-01-30", 4, 1)])
    model = PopularityModel.fit(events, CUTOFF)
    assert model.top(3) == [5, 3, 4]


def test_old_events_decay_with_the_half_life() -> None:
    events = views([("2026-01-17", 1, 1), ("2026-01-17", 1, 1), ("2026-01-17", 1, 1), ("2026-01-30", 2, 1)])
    model = PopularityModel.fit(events, CUTOFF, half_life_days=7)
    # three views 14 days old are worth 3 * 0.25 = 0.75 < one view 1 day old (~0.906)
    assert model.top(2) == [2, 1]
    assert model.score_of([1])[0] == pytest.approx(0.75)
    assert PopularityModel.fit(events, CUTOFF, half_life_days=100).top(1) == [1]


def test_purchased_and_excluded_products_are_skipped_and_categories_topped_up() -> None:
    events = views([("2026-01-30", 1, 10), ("2026-01-30", 1, 10), ("2026-01-30", 2, 10), ("2026-01-30", 3, 20)])
    model = PopularityModel.fit(events, CUTOFF)
    assert model.top(2, exclude={1}) == [2, 3]
    assert model.top(2, category_id=20) == [3, 1]
    assert model.top(5, category_id=10, exclude={1}) == [2, 3]


def test_trending_prefers_recent_growth() -> None:
    rows = [("2026-01-10", 1, 1)] * 20 + [("2026-01-29", 1, 1)] * 2 + [("2026-01-30", 2, 1)] * 10
    model = PopularityModel.fit(views(rows), CUTOFF)
    assert model.trending(1) == [2]


def test_events_at_the_cutoff_are_ignored() -> None:
    events = views([("2026-01-31", 9, 1), ("2026-01-30", 1, 1)])
    assert PopularityModel.fit(events, CUTOFF).top(5) == [1]


def make_stream(n: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    times = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 30 * 86400, n)), unit="s")
    frame = pd.DataFrame({"event_time": times, "event_type": "view", "product_id": 1, "user_id": np.arange(n)})
    return validate_events(frame).events


def test_time_split_never_leaks_the_future() -> None:
    events = make_stream()
    for split in (time_split(events, holdout_fraction=0.2), time_split(events, holdout_days=5)):
        assert split.train["event_time"].max() < split.cutoff <= split.test["event_time"].min()
        assert len(split.train) + len(split.test) == len(events)
    fraction = time_split(events, holdout_fraction=0.2)
    assert len(fraction.test) == pytest.approx(200, abs=5)


def test_three_way_split_windows_are_ordered() -> None:
    split = train_valid_test_split(make_stream(), valid_days=5, test_days=5)
    assert split.train["event_time"].max() < split.valid_start <= split.valid["event_time"].min()
    assert split.valid["event_time"].max() < split.test_start <= split.test["event_time"].min()


@pytest.mark.parametrize("kwargs", [{}, {"holdout_fraction": 1.5}, {"holdout_days": -1}, {"holdout_days": 400}])
def test_bad_split_options_are_user_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(UserInputError):
        time_split(make_stream(), **kwargs)
