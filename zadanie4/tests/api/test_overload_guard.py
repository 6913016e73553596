"""The overload guard: a busy event-loop thread shrinks the open share of the in-flight cap, a free one restores it."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from zadanie4.api.overload_guard import EventLoopAdmission
from zadanie4.api.request_limits import RequestLimitsMiddleware

pytestmark = pytest.mark.anyio
ONE_CLIENT = {"client": ("127.0.0.1", 40_000)}


async def _busy_for(seconds: float) -> None:
    """Keep the loop's thread on the CPU for ``seconds`` in short iterations (like a stream of requests)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        spin_until = time.monotonic() + 0.002
        while time.monotonic() < spin_until:
            pass
        await asyncio.sleep(0)


async def test_busy_loop_cuts_the_share_and_an_idle_one_restores_it() -> None:
    guard = EventLoopAdmission(0.9, interval_s=0.01, window=5)
    guard.start()
    try:
        await asyncio.sleep(0.1)
        assert guard.share == 1.0  # idle loop: everything admitted
        await _busy_for(0.3)
        assert guard.share < 0.1
        assert guard.busy() > 0.9
        await asyncio.sleep(1.5)  # +0.01 per on-time tick
        assert guard.share == 1.0
    finally:
        guard.stop()
    assert guard.share == 1.0  # stopped: never sheds


async def test_waiting_and_late_timers_are_not_overload() -> None:
    guard = EventLoopAdmission(0.9, interval_s=0.01, window=5)
    guard.start()
    try:
        for _ in range(30):  # a slow store: the loop waits, its thread uses no CPU
            await asyncio.sleep(0.01)
        time.sleep(0.06)  # blocked without CPU (preempted, a blocking call): the tick runs late
        await asyncio.sleep(0.02)
        assert guard.share == 1.0
    finally:
        guard.stop()


class WallWhileBusyCpuClock:
    """A thread CPU clock that advances with the wall clock while ``busy``: a busy stretch that no
    preemption by other processes on the 2 shared cores can turn into a partly idle one."""

    def __init__(self) -> None:
        self.busy = False
        self._cpu = 0.0
        self._since = time.monotonic()

    def __call__(self) -> float:
        now = time.monotonic()
        if self.busy:
            self._cpu += now - self._since
        self._since = now
        return self._cpu


async def test_one_long_busy_iteration_counts_for_every_interval_it_spanned() -> None:
    cpu = WallWhileBusyCpuClock()
    guard = EventLoopAdmission(0.9, interval_s=0.01, window=10, runnable_clock=cpu, cpu_clock=cpu)
    guard.start()
    try:
        await asyncio.sleep(0.05)
        cpu()
        cpu.busy = True
        time.sleep(0.12)  # one 120 ms iteration "on the CPU": the tick spans ~12 intervals
        cpu()
        cpu.busy = False
        await asyncio.sleep(0.001)
        assert guard.share < 0.1
        await asyncio.sleep(0.3)  # free again: +0.01 per 10 ms
        assert 0.2 < guard.share <= 1.0
    finally:
        guard.stop()


def _middleware_with_guard() -> tuple[EventLoopAdmission, RequestLimitsMiddleware]:
    """A middleware (in-flight cap 64) steered by a guard whose share the test sets by hand."""

    async def app(scope, receive, send):  # pragma: no cover - never called
        raise AssertionError

    guard = EventLoopAdmission(0.9)
    return guard, RequestLimitsMiddleware(app, max_body_bytes=1, max_in_flight=64, metrics=None, admission=guard)


async def test_the_in_flight_cap_shrinks_with_the_share_but_a_few_are_always_admitted() -> None:
    guard, middleware = _middleware_with_guard()
    guard.start()
    try:
        guard._share = 0.5
        middleware.in_flight = 31
        assert middleware._admitted(ONE_CLIENT)
        middleware.in_flight = 32
        assert not middleware._admitted(ONE_CLIENT)
        guard._share = 0.02  # the floor: 64 x 0.02 < 8, so 8 in flight stay admitted (closed-loop clients)
        middleware.in_flight = 7
        assert middleware._admitted(ONE_CLIENT)
        middleware.in_flight = 8
        assert not middleware._admitted(ONE_CLIENT)
    finally:
        guard.stop()


async def test_while_closing_the_cap_also_bounds_the_connections_starting_requests_per_interval() -> None:
    guard, middleware = _middleware_with_guard()
    guard.start()
    try:
        # Given a closing guard (cap 8) and answers that finish at once (nothing stays in flight)
        guard._share = 0.02
        # when 20 connections each start a request within one 10 ms interval
        flood = [middleware._admitted({"client": ("127.0.0.1", 40_000 + i)}) for i in range(20)]
        # then 8 connections get in, and a connection already in keeps going (a closed-loop client)
        assert flood == [True] * 8 + [False] * 12
        assert all(middleware._admitted({"client": ("127.0.0.1", 40_000)}) for _ in range(50))
        time.sleep(0.011)  # the next interval admits new connections again
        assert middleware._admitted({"client": ("127.0.0.1", 40_019)})
        # and an open guard bounds concurrency only
        guard._share = 1.0
        assert all(middleware._admitted({"client": ("127.0.0.1", 50_000 + i)}) for i in range(100))
    finally:
        guard.stop()


def test_runnable_time_counts_a_busy_thread_and_not_a_sleeping_one() -> None:
    from zadanie4.api.overload_guard import RunnableTimeClock

    open_files = len(os.listdir("/proc/self/fd"))
    clock = RunnableTimeClock()
    start = clock()
    time.sleep(0.05)
    slept = clock() - start
    end = time.monotonic() + 0.05
    while time.monotonic() < end:
        pass
    busy = clock() - start - slept
    clock.close()
    assert slept < 0.01
    assert busy >= 0.045  # on a CPU or waiting for one: the whole 50 ms
    assert len(os.listdir("/proc/self/fd")) == open_files  # close() released the schedstat file


async def test_a_runnable_but_mostly_idle_thread_is_not_overload() -> None:
    # Given a thread kept off the CPU by other processes: runnable all the time, on a CPU 30 % of it
    wall = {"t": 0.0}
    guard = EventLoopAdmission(
        0.9,
        interval_s=0.01,
        window=5,
        clock=lambda: wall["t"],
        runnable_clock=lambda: wall["t"],
        cpu_clock=lambda: 0.3 * wall["t"],
    )
    guard.start()
    try:
        for _ in range(20):
            wall["t"] += 0.01
            guard._tick()
        # then the guard does not close; a thread also on a CPU 70 % of the time would close it
        assert guard.busy() > 0.99 and not guard.overloaded() and guard.share == 1.0
        busy_guard = EventLoopAdmission(
            0.9,
            interval_s=0.01,
            window=5,
            clock=lambda: wall["t"],
            runnable_clock=lambda: wall["t"],
            cpu_clock=lambda: 0.7 * wall["t"],
        )
        busy_guard.start()
        for _ in range(20):
            wall["t"] += 0.01
            busy_guard._tick()
        assert busy_guard.overloaded() and busy_guard.share < 0.1
        busy_guard.stop()
    finally:
        guard.stop()
