"""When and on which code a measurement was made: the ``"run"`` entry of every JSON report.

``make report`` prints it above each result ("measured on commit 1a2b3c4 at 2026-12-06T03:52:00Z"), so a
figure can always be traced back to the code that produced it. Asking git never fails: outside a checkout,
or without git installed, the commit is None.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

# The project's own folder: reports stamp the code they ran, whatever the current directory is.
PROJECT_DIR = Path(__file__).resolve().parent.parent
GIT_TIMEOUT_S = 5.0
DIRTY_SUFFIX = "+dirty"


def _git(args: list[str], repo_dir: Path) -> str | None:
    """Stripped stdout of ``git <args>`` in ``repo_dir``; None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo_dir, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def current_commit(repo_dir: Path = PROJECT_DIR) -> str | None:
    """Short SHA of HEAD, with ``+dirty`` when tracked files have uncommitted changes (untracked ones don't
    count: scratch files and artifacts do not change the code that ran). None outside a git checkout."""
    sha = _git(["rev-parse", "--short", "HEAD"], repo_dir)
    if not sha:
        return None
    changes = _git(["status", "--porcelain", "--untracked-files=no"], repo_dir)
    return sha + DIRTY_SUFFIX if changes else sha


def run_stamp(repo_dir: Path = PROJECT_DIR, now: datetime | None = None) -> dict[str, str | None]:
    """``{"commit": short SHA (+dirty) or None, "measured_at": UTC ISO 8601 to the second, e.g.
    2026-12-06T03:52:00Z}``; ``now`` (any timezone) is for tests, default the current time."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return {"commit": current_commit(repo_dir), "measured_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}
