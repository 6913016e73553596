"""One field of ``/proc/<pid>/status`` (Linux): the memory figures the run report and the benchmarks read."""

from __future__ import annotations


def status_kib(pid: int, field: str) -> int:
    """``field`` (e.g. ``VmRSS``, ``VmHWM``) of a live process in KiB; 0 once it has exited or without /proc."""
    prefix = f"{field}:"
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(prefix):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
