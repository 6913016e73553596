"""Load shedding's saturation signal: a backlog on the event loop, not one slow moment."""

from __future__ import annotations

import asyncio
import time

import pytest

from zadanie4.request_limits import EventLoopLag

pytestmark = pytest.mark.anyio


async def _blocked_iteration(seconds: float) -> None:
    """One loop iteration that keeps the loop busy for ``seconds`` (like a request's CPU work)."""
    time.sleep(seconds)
    await asyncio.sleep(0)


async def test_one_pause_is_not_saturation_but_a_run_of_late_ticks_is() -> None:
    lag = EventLoopLag(0.02, interval_s=0.005)
    lag.start()
    try:
        await asyncio.sleep(0.03)
        assert not lag.saturated
        # one 60 ms pause (a slow request, a garbage collection): a single late tick
        await _blocked_iteration(0.06)
        await asyncio.sleep(0)
        assert not lag.saturated
        await asyncio.sleep(0.03)  # the loop is free again: ticks on time
        assert not lag.saturated
        # a backlog: every iteration is long, so every tick runs late
        seen = []
        for _ in range(6):
            await _blocked_iteration(0.03)
            seen.append(lag.saturated)
        assert seen[-1] and sum(seen) >= 3, seen
        await asyncio.sleep(0.03)
        assert not lag.saturated  # drained
    finally:
        lag.stop()
    assert not lag.saturated  # stopped: never saturated
