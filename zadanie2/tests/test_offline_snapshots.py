"""Offline snapshots: aligned cutoffs, values = the shared functions, incremental rebuilds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared import feature_definitions as fd
from shared.errors import UserInputError
from shared.feature_computation import compute_feature_tables
from zadanie2.offline_snapshots import (
    build_snapshots,
    data_end_of,
    load_offline_events,
    plan_snapshots,
    read_manifest,
    snapshot_file_name,
)
from zadanie2.realtime_updates import append_to_event_log
from zadanie2.tests.conftest import START, OfflineData, make_events


def test_daily_cutoffs_are_utc_midnights_plus_the_data_end() -> None:
    plan = plan_snapshots(pd.Timestamp("2026-03-01 08:00", tz="UTC"), pd.Timestamp("2026-03-04 10:30:01", tz="UTC"))
    assert [c.isoformat() for c in plan.cutoffs] == [
        "2026-03-02T00:00:00+00:00",
        "2026-03-03T00:00:00+00:00",
        "2026-03-04T00:00:00+00:00",
        "2026-03-04T10:30:01+00:00",
    ]


def test_twelve_hour_cutoffs_and_no_duplicate_final_snapshot() -> None:
    plan = plan_snapshots(pd.Timestamp("2026-03-01 01:00", tz="UTC"), pd.Timestamp("2026-03-02 00:00", tz="UTC"), "12h")
    assert [c.hour for c in plan.cutoffs] == [12, 0]
    assert plan.cutoffs[-1] == plan.data_end


@pytest.mark.parametrize("freq", ["soon", "0D"])
def test_bad_frequency_is_a_user_error(freq: str) -> None:
    with pytest.raises(UserInputError):
        plan_snapshots(START, START + pd.Timedelta(days=2), freq)


def test_data_end_is_the_second_after_the_last_event() -> None:
    events = make_events(n_events=50)
    end = data_end_of(events)
    assert end > events["event_time"].max() and end - events["event_time"].max() <= pd.Timedelta(seconds=1)


def test_snapshots_hold_the_shared_feature_values_at_each_cutoff(offline_data: OfflineData) -> None:
    # given the session's snapshots; when one is read back
    cutoff = offline_data.report.cutoffs[2]
    expected = compute_feature_tables(offline_data.events, cutoff)
    for view in fd.VIEWS:
        table = pq.read_table(offline_data.offline_dir / view / snapshot_file_name(cutoff)).to_pandas()
        # then event_timestamp is the cutoff and the values equal the shared functions' output
        assert (table["event_timestamp"] == cutoff).all()
        keys = ["user_id", "product_id"] if view == fd.USER_PRODUCT_INTERACTIONS else table.columns[:1].tolist()
        got = table.set_index(keys)[[s.name for s in fd.features_of(view)]]
        want = getattr(expected, view)
        assert got.index.tolist() == want.index.tolist()
        for spec in fd.features_of(view):
            if spec.dtype.endswith("_list"):
                for g, w in zip(got[spec.name], want[spec.name], strict=True):
                    np.testing.assert_allclose(np.asarray(g, dtype=float), np.asarray(w, dtype=float), rtol=1e-6)
            else:
                assert str(got[spec.name].dtype) == spec.dtype
                np.testing.assert_array_equal(got[spec.name].to_numpy(), want[spec.name].to_numpy())


def test_list_columns_are_typed_arrow_lists(offline_data: OfflineData) -> None:
    schema = pq.read_schema(offline_data.offline_dir / fd.USER_STATS / snapshot_file_name(offline_data.report.data_end))
    assert schema.field("user_top_category_ids").type.value_type == pa.int64()
    assert schema.field("user_top_category_shares").type.value_type == pa.float32()
    assert str(schema.field("event_timestamp").type) == "timestamp[us, tz=UTC]"


def test_rebuild_skips_unchanged_snapshots_and_rewrites_only_later_ones(tmp_path: Path) -> None:
    # given a built offline dir
    events = make_events(n_events=300)
    first = build_snapshots(events, tmp_path)
    assert len(first.written) == len(first.cutoffs) and not first.skipped
    # when nothing changed, then nothing is rewritten
    again = build_snapshots(events, tmp_path)
    assert not again.written and len(again.skipped) == len(first.cutoffs)
    # when one event arrives after the last daily cutoff, then only the final snapshot changes
    late = events.tail(1).copy()
    late["event_time"] = events["event_time"].max() + pd.Timedelta(seconds=5)
    grown = pd.concat([events, late], ignore_index=True)
    third = build_snapshots(grown, tmp_path)
    assert third.written == [third.data_end]
    # and the superseded final snapshot is removed
    assert third.removed == [f"{view}/{snapshot_file_name(first.data_end)}" for view in fd.VIEWS]
    assert read_manifest(tmp_path)["data_end"] == third.data_end.isoformat()


def test_offline_events_include_the_realtime_log(offline_data: OfflineData, tmp_path: Path) -> None:
    pushed = offline_data.events.tail(2).copy()
    pushed["event_time"] = offline_data.events["event_time"].max() + pd.Timedelta(hours=1)
    append_to_event_log(pushed, tmp_path / "log")
    append_to_event_log(pushed, tmp_path / "log")  # the same events twice: exact duplicates count once
    combined = load_offline_events(offline_data.events_path, tmp_path / "log")
    assert len(combined) == len(offline_data.events) + 2
    assert combined["event_time"].is_monotonic_increasing


def test_pushed_events_dated_before_the_batch_or_in_the_future_are_ignored(
    offline_data: OfflineData, tmp_path: Path
) -> None:
    # Given a real-time log with one plausible event, one from 2000 and one from next year
    pushed = offline_data.events.tail(3).copy()
    pushed["event_time"] = [
        offline_data.events["event_time"].max() + pd.Timedelta(hours=1),
        pd.Timestamp("2000-01-01", tz="UTC"),
        pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=365),
    ]
    append_to_event_log(pushed, tmp_path / "log")
    # when the offline events are loaded, only the plausible one joins the batch
    combined = load_offline_events(offline_data.events_path, tmp_path / "log")
    assert len(combined) == len(offline_data.events) + 1
    assert combined["event_time"].min() == offline_data.events["event_time"].min()


def test_building_without_events_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no events"):
        build_snapshots(make_events().head(0), tmp_path)


def test_cutoffs_counted_back_from_the_end_hit_the_training_cutoffs() -> None:
    # given a 28-day log whose last event is on 2026-03-29 (training's end: the midnight after, 03-30)
    plan = plan_snapshots(
        pd.Timestamp("2026-03-01 08:00", tz="UTC"), pd.Timestamp("2026-03-29 10:00:01", tz="UTC"), "5D"
    )
    # then every 5 days back from 03-30 (train, valid and test cutoffs are 03-15, 03-20, 03-25), then the data end
    assert [c.strftime("%m-%d") for c in plan.cutoffs] == ["03-05", "03-10", "03-15", "03-20", "03-25", "03-29"]
    assert plan.cutoffs[-1] == plan.data_end
