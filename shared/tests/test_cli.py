"""The root CLI: data commands, part mounting, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cli import main


def test_generate_writes_the_ground_truth_beside_the_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default data/ folder would be tmp_path/data: it must stay untouched
    out = tmp_path / "shop" / "events.parquet"
    with pytest.raises(SystemExit) as done:
        main(["data", "generate", "--users", "30", "--products", "120", "--days", "2", "--out", str(out)])
    assert done.value.code == 0
    assert out.is_file()
    assert any((tmp_path / "shop" / "ground_truth").iterdir())
    assert not (tmp_path / "data").exists()


def test_every_part_is_mounted(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for command in ("data", "eda", "train", "evaluate", "features", "registry", "serve", "simulate-ab"):
        assert f" {command} " in listed


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["data", "validate", str(tmp_path / "nope.parquet")])
    assert done.value.code == 2
    out = capsys.readouterr().out
    assert "nope.parquet" in out and "Traceback" not in out


def test_a_catalogue_too_small_for_the_categories_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["data", "generate", "--products", "20", "--out", "unused.parquet"])
    assert done.value.code == 2
    assert "too small" in capsys.readouterr().out
