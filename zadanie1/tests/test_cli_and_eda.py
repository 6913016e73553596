"""CLI errors (one line, exit 2) and the EDA on full and bare event files."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from shared import column_names as col
from shared.cli import main
from shared.event_loader import validate_events
from zadanie1.eda import run_eda


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code or 0), capsys.readouterr().out


@pytest.mark.parametrize("command", ["eda", "train", "evaluate"])
def test_a_missing_events_file_is_one_line_and_exit_code_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_cli([command, "--events", str(tmp_path / "missing.parquet")], capsys)
    assert code == 2
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and "file not found" in lines[-1]
    assert "Traceback" not in out


def test_both_holdout_options_are_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(["evaluate", "--holdout-days", "3", "--holdout-fraction", "0.2"], capsys)
    assert code == 2
    assert "only one of --holdout-fraction or --holdout-days" in out


def test_too_short_a_history_is_a_clear_user_error(
    tmp_path: Path, small_events: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "short.parquet"
    small_events[small_events[col.EVENT_TIME] < pd.Timestamp("2026-10-05", tz="UTC")].to_parquet(path)
    code, out = run_cli(["train", "--events", str(path), "--no-mlflow"], capsys)
    assert code == 2
    assert "label windows" in out and "Traceback" not in out


def test_feast_feature_source_without_zadanie2_is_a_user_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "zadanie2.training_features", None)  # import fails as if not installed
    code, out = run_cli(["train", "--feature-source", "feast"], capsys)
    assert code == 2
    assert "--feature-source feast" in out


def test_an_unknown_feature_source_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_cli(["train", "--feature-source", "nope"], capsys)
    assert code == 2


def test_eda_writes_every_plot_and_the_report(tmp_path: Path, small_events: pd.DataFrame) -> None:
    result = run_eda(small_events, tmp_path)
    names = {p.name for p in result.plots}
    assert {"hourly_activity.png", "event_funnel.png", "product_popularity_long_tail.png"} <= names
    assert len(names) == 9 and not result.skipped
    report = (tmp_path / "report.md").read_text()
    assert "![hourly_activity](hourly_activity.png)" in report
    assert f"{len(small_events):,} events" in report
    assert result.numbers["n_purchase"] == int((small_events[col.EVENT_TYPE] == "purchase").sum())


def test_eda_works_without_price_brand_category_or_session(tmp_path: Path, small_events: pd.DataFrame) -> None:
    bare = validate_events(small_events[[col.EVENT_TIME, col.EVENT_TYPE, col.PRODUCT_ID, col.USER_ID]]).events
    result = run_eda(bare, tmp_path)
    skipped = " ".join(result.skipped)
    assert "category_shares.png" in skipped and "price_by_category.png" in skipped
    assert (tmp_path / "session_length.png").exists()  # sessions from time gaps
    assert "30-minute gaps" in (tmp_path / "report.md").read_text()
