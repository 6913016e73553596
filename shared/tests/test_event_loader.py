"""Loader: each bad-input case gives its message and the CLI exit code 2; good files load identically."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from shared import column_names as col
from shared.cli import main
from shared.errors import EventDataError
from shared.event_loader import load_events, validate_events

KAGGLE_CSV = """event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session
2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde-8bb3-4e00-8c23-a032dfed738c
2019-10-01 00:00:01 UTC,view,3900821,2053013552326770905,appliances.environment.water_heater,aqua,33.20,554748717,9333dfbd-b87a-4708-9857-6336556b0fcc
2019-10-01 00:00:02 UTC,cart,17200506,2053013559792632471,furniture.living_room.sofa,,543.10,519107250,566511c2-e2e3-422b-b695-cf8e6e792ca8
2019-10-01 00:00:02 UTC,purchase,1307067,2053013558920217191,computers.notebook,lenovo,251.74,550050854,7c90fc70-0e80-4590-96f3-13c02c18c713
"""


def write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_kaggle_csv_loads_with_types(tmp_path: Path) -> None:
    loaded = load_events(write(tmp_path, KAGGLE_CSV))
    events = loaded.events
    assert list(events.columns) == list(col.ALL_COLUMNS)
    assert str(events[col.EVENT_TIME].dtype) == "datetime64[ns, UTC]"
    assert events[col.USER_ID].dtype == "int64" and events[col.PRODUCT_ID].dtype == "int64"
    assert events[col.PRICE].dtype == "float32"
    # large REES46 category ids survive exactly (no float rounding)
    assert events[col.CATEGORY_ID].iloc[0] == 2103807459595387724
    assert pd.isna(events[col.CATEGORY_CODE].iloc[0]) and pd.isna(events[col.BRAND].iloc[2])
    assert loaded.summary.rows_read == 4 and loaded.summary.rows_kept == 4 and loaded.summary.dropped == {}


def test_csv_gz_and_parquet_load_identically(tmp_path: Path) -> None:
    csv = load_events(write(tmp_path, KAGGLE_CSV)).events
    gz_path = tmp_path / "events.csv.gz"
    with gzip.open(gz_path, "wt") as handle:
        handle.write(KAGGLE_CSV)
    parquet_path = tmp_path / "events.parquet"
    csv.to_parquet(parquet_path)
    pd.testing.assert_frame_equal(load_events(gz_path).events, csv)
    pd.testing.assert_frame_equal(load_events(parquet_path).events, csv)


def test_iso_and_kaggle_timestamps_are_the_same_utc_instant() -> None:
    frame = pd.DataFrame(
        {
            "event_time": ["2019-10-01 00:00:00 UTC", "2019-10-01T02:00:00+02:00", "2019-10-01T00:00:00Z"],
            "event_type": ["view", "view", "view"],
            "product_id": ["1", "2", "3"],
            "user_id": ["7", "7", "7"],
        }
    )
    times = validate_events(frame).events[col.EVENT_TIME]
    assert times.nunique() == 1 and times.iloc[0] == pd.Timestamp("2019-10-01", tz="UTC")


def test_minimal_file_without_optional_columns_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "event_time,event_type,product_id,user_id\n2020-01-01 10:00:00 UTC,purchase,5,9\n")
    events = load_events(path).events
    assert events[col.PRICE].isna().all() and events[col.BRAND].isna().all()
    assert events[col.CATEGORY_ID].isna().all()


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("event_time,product_id,user_id\n2020-01-01,1,2\n", ["missing required column", "event_type"]),
        (
            "event_time,event_type,product_id,user_id\nyesterday,view,1,2\n2020-01-01,view,1,2\n",
            ["event_time", "unparsable timestamp", "row 1: 'yesterday'"],
        ),
        (
            "event_time,event_type,product_id,user_id\n2020-01-01,click,1,2\n2020-01-01,view,1,2\n",
            ["event_type", "unknown event type", "'click'"],
        ),
        ("event_time,event_type,product_id,user_id\n2020-01-01,view,abc,2\n", ["product_id", "non-integer", "'abc'"]),
        ("event_time,event_type,product_id,user_id\n2020-01-01,view,1,2.5\n", ["user_id", "non-integer", "'2.5'"]),
    ],
)
def test_bad_input_names_file_column_and_rows(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(EventDataError) as error:
        load_events(path)
    message = str(error.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_at_most_five_offending_rows_are_listed(tmp_path: Path) -> None:
    rows = "".join(f"2020-01-01,view,x{i},2\n" for i in range(9))
    with pytest.raises(EventDataError) as error:
        load_events(write(tmp_path, "event_time,event_type,product_id,user_id\n" + rows))
    assert "9 non-integer" in str(error.value) and str(error.value).count("row ") == 5


def test_unknown_event_types_can_be_dropped_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "event_time,event_type,product_id,user_id\n2020-01-01,click,1,2\n2020-01-01,view,1,2\n")
    loaded = load_events(path, drop_unknown_event_types=True)
    assert len(loaded.events) == 1
    assert loaded.summary.dropped == {"unknown event_type": 1}


def test_null_ids_and_exact_duplicates_are_dropped_and_counted(tmp_path: Path) -> None:
    text = (
        "event_time,event_type,product_id,user_id\n"
        "2020-01-01,view,1,2\n2020-01-01,view,1,2\n2020-01-01,view,,2\n2020-01-01,view,3,\n2020-01-02,cart,1,2\n"
    )
    loaded = load_events(write(tmp_path, text))
    assert len(loaded.events) == 2
    assert loaded.summary.dropped == {"exact duplicate": 1, "null user_id or product_id": 2}
    assert loaded.summary.rows_read == 5 and loaded.summary.rows_kept == 2


def test_missing_broken_and_unsupported_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EventDataError, match="file not found"):
        load_events(tmp_path / "nope.csv")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file")
    with pytest.raises(EventDataError, match="cannot read file"):
        load_events(broken)
    with pytest.raises(EventDataError, match="unsupported file type"):
        load_events(write(tmp_path, "x", name="events.json"))


def test_cli_validate_prints_summary_and_bad_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ok_exit:
        main(["data", "validate", str(write(tmp_path, KAGGLE_CSV))])
    assert ok_exit.value.code == 0
    assert "rows kept: 4" in capsys.readouterr().out
    bad = write(tmp_path, "event_time,product_id,user_id\n2020-01-01,1,2\n", name="bad.csv")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "validate", str(bad)])
    assert exit_info.value.code == 2
    output = capsys.readouterr().out
    assert "missing required column" in output and "Traceback" not in output
