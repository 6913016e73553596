"""The "run" stamp of the JSON reports: commit (+dirty) and UTC time, never failing without git."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared.run_stamp import current_commit, run_stamp

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with one commit of one tracked file."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "code.py").write_text("x = 1\n")
    _git(root, "add", "code.py")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first")
    return root


@needs_git
def test_clean_checkout_is_stamped_with_its_short_sha(repo: Path) -> None:
    # given a checkout without changes; when stamped
    stamp = run_stamp(repo, now=datetime(2026, 12, 6, 3, 52, 7, 999, tzinfo=UTC))
    # then the commit is HEAD's short sha and the time is UTC to the second
    assert stamp == {"commit": _git(repo, "rev-parse", "--short", "HEAD"), "measured_at": "2026-12-06T03:52:07Z"}


@needs_git
def test_changed_tracked_file_marks_the_commit_dirty(repo: Path) -> None:
    # given an uncommitted change to a tracked file
    (repo / "code.py").write_text("x = 2\n")
    # when / then
    assert current_commit(repo) == _git(repo, "rev-parse", "--short", "HEAD") + "+dirty"


@needs_git
def test_untracked_files_do_not_make_the_commit_dirty(repo: Path) -> None:
    # given a new file git does not track (an artifact, a scratch file)
    (repo / "scratch.json").write_text("{}")
    # when / then
    assert current_commit(repo) == _git(repo, "rev-parse", "--short", "HEAD")


def test_folder_outside_a_checkout_has_no_commit(tmp_path: Path) -> None:
    # given a folder that is no git checkout
    # when stamped
    stamp = run_stamp(tmp_path, now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    # then the commit is unknown and the time is still there
    assert stamp == {"commit": None, "measured_at": "2026-01-02T03:04:05Z"}


def test_missing_git_gives_no_commit_instead_of_an_error(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given no git executable on the PATH
    monkeypatch.setenv("PATH", str(repo / "no-such-bin"))
    # when / then
    assert current_commit(repo) is None


def test_time_in_another_zone_is_written_in_utc() -> None:
    # given 05:00 at UTC+2; when stamped; then 03:00 UTC
    local = datetime(2026, 6, 1, 5, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert run_stamp(Path("/"), now=local)["measured_at"] == "2026-06-01T03:00:00Z"
