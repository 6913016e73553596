"""Settings shared by every test folder.

Services started by tests serve their rankers on LightGBM: compiling a ranker (zadanie4's
RankerCompiler) is a background job of tens of CPU-seconds per model that would compete with the
timing-sensitive tests on this 2-core machine. The compiler's own tests turn it on explicitly.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("RECSYS_SERVE_COMPILE_RANKER", "false")  # also for services tests start as processes
