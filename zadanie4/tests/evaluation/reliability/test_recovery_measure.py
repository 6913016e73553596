"""How the fault scenarios measure recovery: the first second of normal answers in a row after the heal."""

from __future__ import annotations

from zadanie4.evaluation.reliability.harness import Sample
from zadanie4.evaluation.reliability.scenarios_faults import degraded_after, recovery_seconds


def _answers(pattern: str, start: float = 100.0, step: float = 0.1) -> list[Sample]:
    """One answer per ``step`` s: ``n`` normal, ``d`` degraded, ``x`` 503."""
    return [
        Sample(i, start + i * step, 503 if c == "x" else 200, 5.0, degraded=(c == "d")) for i, c in enumerate(pattern)
    ]


def test_recovery_is_where_a_second_of_normal_answers_begins() -> None:
    # Given degraded answers for 0.3 s after the heal at t=100, then normal ones
    samples = _answers("ddd" + "n" * 20)
    assert abs(recovery_seconds(samples, 100.0) - 0.3) < 1e-9
    assert degraded_after(samples, 100.3) == 0


def test_a_lone_late_degraded_answer_is_counted_but_does_not_move_the_recovery() -> None:
    samples = _answers("dd" + "n" * 30 + "d" + "n" * 20)
    assert abs(recovery_seconds(samples, 100.0) - 0.2) < 1e-9
    assert degraded_after(samples, 100.2) == 1


def test_no_steady_second_means_not_recovered() -> None:
    assert recovery_seconds(_answers("ndndnnnnndnnnnnx" * 3), 100.0) is None
    assert recovery_seconds([], 100.0) is None


def test_answers_sent_before_the_heal_do_not_count() -> None:
    samples = _answers("n" * 15 + "d" + "n" * 15)  # t=100.0..103.0, degraded at 101.5
    assert abs(recovery_seconds(samples, 101.0) - 0.6) < 1e-9
