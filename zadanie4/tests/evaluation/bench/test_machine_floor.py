"""The machine-floor probe recorded with every benchmark run."""

from __future__ import annotations

from zadanie4.evaluation.bench import machine_floor


def test_the_probe_reports_each_cost_in_ns_per_operation(monkeypatch):
    # given small batches (the probe's shape, not its duration, is under test)
    monkeypatch.setattr(machine_floor, "SYSCALLS_PER_BATCH", 2_000)
    monkeypatch.setattr(machine_floor, "LOOP_ITERATIONS_PER_BATCH", 20_000)
    monkeypatch.setattr(machine_floor, "ROUND_TRIPS_PER_BATCH", 200)
    # when
    floor = machine_floor.measure_machine_floor()
    # then every cost is a positive ns figure; a socket round trip costs more than one system call
    assert set(floor) == {"syscall_ns", "python_loop_iteration_ns", "socket_round_trip_ns"}
    assert all(value > 0 for value in floor.values())
    assert floor["socket_round_trip_ns"] > floor["syscall_ns"]
