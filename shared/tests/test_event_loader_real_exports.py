"""What a real REES46 export carries: every quirk is kept or dropped with a count, never a crash."""

from __future__ import annotations

import pandas as pd

from shared.event_loader import HEAVY_USER_EVENTS, load_events


def test_a_messy_real_export_is_read_with_a_count_for_every_quirk(tmp_path):
    # given an export with an extra column, no user_session, mixed-case types, empty brand and category,
    # zero prices, a duplicated row, unsorted times and one crawler-like user
    rows = [
        ("2019-10-01 00:00:02 UTC", "View", 1, 10, "", "acme", "0"),
        ("2019-10-01 00:00:01 UTC", " CART ", 2, 10, "electronics.phone", "", "5.5"),
        ("2019-10-01 00:00:03 UTC", "purchase", 2, 11, "electronics.phone", "acme", "5.5"),
        ("2019-10-01 00:00:03 UTC", "purchase", 2, 11, "electronics.phone", "acme", "5.5"),
    ]
    start = pd.Timestamp("2019-10-02")
    bot = [
        ((start + pd.Timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S UTC"), "view", 3 + i % 7, 99, "", "", "1")
        for i in range(HEAVY_USER_EVENTS + 1)
    ]
    frame = pd.DataFrame(
        rows + bot, columns=["event_time", "event_type", "product_id", "user_id", "category_code", "brand", "price"]
    )
    frame["warehouse"] = "north"
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    # when it is loaded
    loaded = load_events(path)
    summary = loaded.summary
    # then nothing crashed, the duplicate is dropped and every kept quirk is counted
    assert summary.rows_read == 4 + HEAVY_USER_EVENTS + 1
    assert summary.dropped == {"exact duplicate": 1}
    assert summary.rows_kept == 3 + HEAVY_USER_EVENTS + 1
    assert summary.ignored_columns == ["warehouse"]
    noted = summary.noted
    assert noted["event_type case or spaces normalized"] == 2
    assert noted["price 0"] == 1
    assert noted["user_session missing"] == summary.rows_kept
    assert noted["brand empty"] == 1 + HEAVY_USER_EVENTS + 1
    assert noted["category_code empty"] == 1 + HEAVY_USER_EVENTS + 1
    assert noted["rows out of time order (sorted)"] == 1
    assert noted[f"users with > {HEAVY_USER_EVENTS:,} events (likely bots)"] == 1
    assert noted[f"events of users with > {HEAVY_USER_EVENTS:,} events"] == HEAVY_USER_EVENTS + 1
    assert list(loaded.events["event_type"].head(2)) == ["cart", "view"]
    assert loaded.events["event_time"].is_monotonic_increasing
    assert any(line.startswith("kept, noted (price 0): 1") for line in summary.lines())


def test_the_validated_copy_loads_as_the_same_frame_and_summary(tmp_path):
    from shared.event_loader import write_validated_events

    # given a messy export, validated once and written as the validated copy
    frame = pd.DataFrame(
        {
            "event_time": ["2019-10-01 00:00:02 UTC", "2019-10-01 00:00:01 UTC", "2019-10-01 00:00:01 UTC"],
            "event_type": ["View", "purchase", "purchase"],
            "product_id": [1, 2, 2],
            "category_id": ["2053013555631882655", "", ""],
            "brand": ["", "acme", "acme"],
            "price": ["0", "5.5", "5.5"],
            "user_id": [7, 8, 8],
        }
    )
    frame.to_csv(tmp_path / "export.csv", index=False)
    first = load_events(tmp_path / "export.csv")
    copy = write_validated_events(first, tmp_path / "validated.parquet")
    # when the copy is loaded
    again = load_events(copy)
    # then it is the frame and summary of the first validation, dtypes included
    pd.testing.assert_frame_equal(again.events, first.events)
    assert again.summary == first.summary
    assert list(again.events["event_type"].cat.categories) == list(first.events["event_type"].cat.categories)
    # and a plain Parquet file with the same rows is validated as usual (nothing marks it)
    first.events.to_parquet(tmp_path / "plain.parquet", index=False)
    assert load_events(tmp_path / "plain.parquet").summary.source.endswith("plain.parquet")
