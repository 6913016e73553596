"""The overload guard: how much of the in-flight cap is open, steered by how busy the event loop is.

Under a burst the backlog waits outside the process (connection pools, socket buffers, the accept
queue), so the in-flight cap of :mod:`zadanie4.api.request_limits` alone does not bite. The guard
watches the event loop's thread and shrinks the cap while it is saturated, so the excess is refused
503 in milliseconds instead of queueing for seconds.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable


class RunnableTimeClock:
    """Seconds the opening thread has been running or waiting in the run queue for a CPU (Linux
    ``/proc/thread-self/schedstat``; ``time.thread_time`` elsewhere). Open it on the thread to measure
    (the file stays bound to that thread); ``close()`` releases the file.

    CPU time alone under-reads a saturated loop on shared cores: with the load generator, Redis and
    the service on 2 cores, the loop thread got ~80 % of a core and never reached a 0.9 CPU share while
    its backlog grew by ~1,000 requests a second. Time spent waiting for a CPU is demand as well.
    """

    def __init__(self) -> None:
        self._fd: int | None = None
        try:
            self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            self()
        except (OSError, ValueError):
            self.close()

    def __call__(self) -> float:
        if self._fd is None:
            return time.thread_time()
        run_ns, wait_ns = os.pread(self._fd, 128, 0).split()[:2]
        return (int(run_ns) + int(wait_ns)) / 1e9

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EventLoopAdmission:
    """The open share (0..1) of the in-flight cap, steered by how busy the event loop's thread is.

    Under a burst the backlog does not wait where the service can see it: requests queue in the
    clients' connection pools, in socket buffers and in the kernel's accept queue, while the loop runs
    short iterations and an in-flight counter stays low. What does show is the loop's thread never
    idle. Every ``interval_s`` the guard reads the thread's runnable time (on a CPU or waiting for one,
    :class:`RunnableTimeClock`) and its CPU time over the last ``window`` ticks. The loop is overloaded
    when it was runnable for at least ``max_busy`` of the wall time AND on a CPU for at least
    ``min_cpu_share`` of it: CPU time alone under-reads a saturated loop on shared cores (0.7-0.85 seen
    while its backlog grew), runnable time alone also counts a lightly loaded thread that other
    processes kept off the cores (a 100 ms preemption at 200 req/s then refused canary requests).
    Overloaded, the share is cut (x ``decrease`` per interval the tick spanned), otherwise it grows by
    ``increase`` per interval (AIMD, as TCP steers its window).
    Waiting on I/O (a slow store, a stall) is neither and never counts as overload.
    """

    def __init__(
        self,
        max_busy: float,
        *,
        min_cpu_share: float = 0.6,
        interval_s: float = 0.01,
        window: int = 10,
        decrease: float = 0.5,
        increase: float = 0.01,
        floor: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        runnable_clock: Callable[[], float] | None = None,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.max_busy = max_busy
        self.min_cpu_share = min_cpu_share
        self.interval_s = interval_s
        self.decrease = decrease
        self.increase = increase
        self.floor = floor
        self._clock = clock
        self._given_runnable_clock = runnable_clock
        self._cpu_clock = cpu_clock
        self._share = 1.0
        self._marks: deque[tuple[float, float, float]] = deque(maxlen=window + 1)  # (wall, runnable, cpu)
        self._window_s = window * interval_s
        self._handle: asyncio.TimerHandle | None = None
        self._own_clock: RunnableTimeClock | None = None  # opened by start() when none was given

    @property
    def share(self) -> float:
        """The open share of the in-flight cap (1.0 when the loop keeps up or the guard is stopped)."""
        return self._share if self._handle is not None else 1.0

    def start(self) -> None:
        """Start ticking on the running loop (call it on the loop's thread: the clocks measure that thread)."""
        if self._handle is None:
            if self._given_runnable_clock is None:
                self._own_clock = RunnableTimeClock()
            self._marks.clear()
            self._marks.append(self._mark())
            self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._own_clock is not None:
            self._own_clock.close()
            self._own_clock = None
        self._handle, self._share = None, 1.0

    def busy(self) -> float:
        """Runnable time of the loop's thread / wall time over the last ``window`` intervals (a long last
        tick alone when it spanned more); 0 before two measurements."""
        return self._shares()[0]

    def overloaded(self) -> bool:
        runnable, cpu = self._shares()
        return runnable >= self.max_busy and cpu >= self.min_cpu_share

    def _mark(self) -> tuple[float, float, float]:
        runnable_clock = self._given_runnable_clock or self._own_clock or self._cpu_clock
        return self._clock(), runnable_clock(), self._cpu_clock()

    def _shares(self) -> tuple[float, float]:
        """(runnable, cpu) shares of the wall time over the window."""
        if len(self._marks) < 2:
            return 0.0, 0.0
        wall1, runnable1, cpu1 = self._marks[-1]
        wall0, runnable0, cpu0 = self._marks[0]
        for wall, runnable, cpu in reversed(self._marks):
            if wall1 - wall >= self._window_s:
                wall0, runnable0, cpu0 = wall, runnable, cpu
                break
        if wall1 <= wall0:
            return 0.0, 0.0
        return (runnable1 - runnable0) / (wall1 - wall0), (cpu1 - cpu0) / (wall1 - wall0)

    def _schedule(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.interval_s, self._tick)

    def _tick(self) -> None:
        mark = self._mark()  # on the loop's thread: its runnable and CPU time
        # A long loop iteration delays the tick: it counts as every interval it spanned. Lateness alone is
        # no signal: a process preempted by others (2 shared cores) runs its timers late without overload.
        steps = max(1, round((mark[0] - self._marks[-1][0]) / self.interval_s))
        self._marks.append(mark)
        if self.overloaded():
            self._share = max(self.floor, self._share * self.decrease**steps)
        else:
            self._share = min(1.0, self._share + self.increase * steps)
        self._schedule()
