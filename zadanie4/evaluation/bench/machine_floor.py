"""What this machine charges for the work every request does, measured next to the benchmark's figures.

The HTTP floor of the service is mostly system calls (epoll, recv, send) and interpreter work. On the
shared 2-core VMs these run at different speeds from day to day: on one day the same code of `/health/live`
answered 15,584 req/s, on another 3,000-4,000 (old and new commits side by side gave the same), and
``os.getppid()`` took ~0.7 µs per call instead of the ~0.1-0.2 µs of a quiet VM. Recording these three
numbers with every run lets two runs' latency tables be compared for what they are.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from collections.abc import Callable

SYSCALLS_PER_BATCH = 200_000
LOOP_ITERATIONS_PER_BATCH = 2_000_000
ROUND_TRIPS_PER_BATCH = 20_000
BATCHES = 5


def _median_per_op_ns(batch: int, run: Callable[[int], None]) -> float:
    timings = []
    for _ in range(BATCHES):
        started = time.perf_counter_ns()
        run(batch)
        timings.append((time.perf_counter_ns() - started) / batch)
    return round(statistics.median(timings), 1)


def _syscalls(n: int) -> None:
    getppid = os.getppid
    for _ in range(n):
        getppid()


def _python_loop(n: int) -> None:
    total = 0
    for i in range(n):
        total += i


def _loopback_round_trips(n: int) -> None:
    a, b = socket.socketpair()
    try:
        for _ in range(n):
            a.send(b"x")
            b.recv(1)
    finally:
        a.close()
        b.close()


def measure_machine_floor() -> dict[str, float]:
    """Median ns per operation over 5 batches (about a second in all): a system call, one iteration of a
    Python loop, and a one-byte send + receive over a local socket pair."""
    return {
        "syscall_ns": _median_per_op_ns(SYSCALLS_PER_BATCH, _syscalls),
        "python_loop_iteration_ns": _median_per_op_ns(LOOP_ITERATIONS_PER_BATCH, _python_loop),
        "socket_round_trip_ns": _median_per_op_ns(ROUND_TRIPS_PER_BATCH, _loopback_round_trips),
    }
