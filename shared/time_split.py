"""Time-based splits that cannot leak the future: every train event is strictly before the cutoff."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from shared import column_names as col
from shared.errors import UserInputError
from shared.feature_computation import DAY


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame  # events with event_time < cutoff
    test: pd.DataFrame  # events with event_time >= cutoff
    cutoff: pd.Timestamp


def holdout_cutoff(
    events: pd.DataFrame, *, holdout_fraction: float | None = None, holdout_days: float | None = None
) -> pd.Timestamp:
    """The cutoff leaving the last ``holdout_fraction`` of events, or the last ``holdout_days`` days, for test.

    Exactly one of the two must be given; fraction in (0, 1), days > 0.
    """
    if (holdout_fraction is None) == (holdout_days is None):
        raise UserInputError("give exactly one of --holdout-fraction or --holdout-days")
    if events.empty:
        raise UserInputError("cannot split an empty events table")
    times = events[col.EVENT_TIME]
    if holdout_days is not None:
        if holdout_days <= 0:
            raise UserInputError(f"--holdout-days must be > 0, got {holdout_days}")
        cutoff = times.max() - holdout_days * DAY
    else:
        assert holdout_fraction is not None
        if not 0 < holdout_fraction < 1:
            raise UserInputError(f"--holdout-fraction must be between 0 and 1, got {holdout_fraction}")
        ordered = times.sort_values(kind="stable").reset_index(drop=True)
        cutoff = ordered.iloc[min(len(ordered) - 1, int(len(ordered) * (1 - holdout_fraction)))]
    if cutoff <= times.min():
        raise UserInputError("the holdout covers all events; nothing left to train on")
    return pd.Timestamp(cutoff)


def split_at(events: pd.DataFrame, cutoff: pd.Timestamp) -> TimeSplit:
    before = events[col.EVENT_TIME] < cutoff
    return TimeSplit(train=events[before], test=events[~before], cutoff=cutoff)


def time_split(
    events: pd.DataFrame, *, holdout_fraction: float | None = None, holdout_days: float | None = None
) -> TimeSplit:
    """Split by time into train (< cutoff) and test (>= cutoff)."""
    return split_at(events, holdout_cutoff(events, holdout_fraction=holdout_fraction, holdout_days=holdout_days))


@dataclass(frozen=True)
class ThreeWaySplit:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    valid_start: pd.Timestamp
    test_start: pd.Timestamp


def train_valid_test_split(events: pd.DataFrame, *, valid_days: float, test_days: float) -> ThreeWaySplit:
    """Consecutive windows: train < valid_start <= valid < test_start <= test."""
    test_start = holdout_cutoff(events, holdout_days=test_days)
    valid_start = test_start - valid_days * DAY
    if valid_start <= events[col.EVENT_TIME].min():
        raise UserInputError("validation and test windows cover all events; nothing left to train on")
    times = events[col.EVENT_TIME]
    return ThreeWaySplit(
        train=events[times < valid_start],
        valid=events[(times >= valid_start) & (times < test_start)],
        test=events[times >= test_start],
        valid_start=pd.Timestamp(valid_start),
        test_start=pd.Timestamp(test_start),
    )
