"""The gate is a pure function of figures and thresholds: each row breaks exactly one figure."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from zadanie3.validation_gate import (
    ComparisonFigures,
    GateThresholds,
    LatencyFigures,
    MeasuredFigures,
    OutputFigures,
    QualityFigures,
    StabilityFigures,
    describe_non_default_thresholds,
    evaluate_gates,
    non_default_thresholds,
    promotion_decision,
)

THRESHOLDS = GateThresholds()


def passing_figures(*, with_champion: bool = True) -> MeasuredFigures:
    """Figures of a healthy challenger that is as good as the champion."""
    return MeasuredFigures(
        quality=QualityFigures(0.91, 0.62, 0.88, 0.55, 0.5, 10, 4000, 350),
        latency=LatencyFigures(200, 500, 0.8, 1.0, 1.4, 2.0, 0.85),
        stability=StabilityFigures(
            [0.90, 0.91, 0.92, 0.91], [0.6] * 4, [1000] * 4, 0.02, 0.006, 0.01, (0.9, 0.92), 200
        ),
        outputs=OutputFigures(4000, 0, 0.01, 0.97, True, 0.0, 0.0, 0.0, 38, 0, True),
        comparison=ComparisonFigures(
            1, 0.905, 0.615, 0.91, 0.62, 0.005, (-0.004, 0.014), 0.005, (-0.002, 0.012), 0.3, 0.25, 350, 200
        )
        if with_champion
        else None,
    )


def replace(figures: MeasuredFigures, part: str, **changes: object) -> MeasuredFigures:
    return dataclasses.replace(figures, **{part: dataclasses.replace(getattr(figures, part), **changes)})


# (case, part, changes, gate expected to fail)
BROKEN_FIGURES = [
    ("auc below 0.85", "quality", {"roc_auc": 0.84}, "quality"),
    ("auc not measurable", "quality", {"roc_auc": math.nan}, "quality"),
    ("ndcg 0.02 below champion", "quality", {"ndcg_at_k": 0.595}, "quality"),
    ("p99 at the limit", "latency", {"p99_ms": 50.0}, "latency"),
    ("too few latency calls", "latency", {"n_calls": 199}, "latency"),
    ("too few candidates per call", "latency", {"n_candidates": 200}, "latency"),
    ("auc drifts across time", "stability", {"time_slice_auc_spread": 0.08}, "stability"),
    ("auc unstable under resampling", "stability", {"bootstrap_auc_std": 0.03}, "stability"),
    ("nan scores", "outputs", {"n_nonfinite": 3}, "outputs"),
    ("probability above 1", "outputs", {"score_max": 1.2}, "outputs"),
    ("not deterministic", "outputs", {"max_repeat_diff": 1e-3}, "outputs"),
    ("single rows differ from batch", "outputs", {"max_single_vs_batch_diff": 1e-4}, "outputs"),
    ("row order changes scores", "outputs", {"max_permutation_diff": 1e-4}, "outputs"),
    ("nan with missing features", "outputs", {"n_nonfinite_with_missing": 1}, "outputs"),
    ("missing values never tried", "outputs", {"missing_value_cases": 0}, "outputs"),
    ("feature order differs", "outputs", {"feature_names_match": False}, "outputs"),
    ("significantly worse ndcg than champion", "comparison", {"ndcg_delta_ci": (-0.05, -0.01)}, "champion_comparison"),
    ("significantly worse auc than champion", "comparison", {"auc_delta_ci": (-0.03, 0.0)}, "champion_comparison"),
]


def test_healthy_challenger_passes_every_gate() -> None:
    decision = evaluate_gates(passing_figures(), THRESHOLDS)

    assert decision.passed
    assert [g.status for g in decision.gates] == ["pass"] * 5
    assert decision.failed_gates == []


@pytest.mark.parametrize(
    ("case", "part", "changes", "failing_gate"), BROKEN_FIGURES, ids=[r[0] for r in BROKEN_FIGURES]
)
def test_each_broken_figure_fails_exactly_its_gate(case: str, part: str, changes: dict, failing_gate: str) -> None:
    figures = replace(passing_figures(), part, **changes)

    decision = evaluate_gates(figures, THRESHOLDS)

    assert not decision.passed
    assert decision.failed_gates == [failing_gate]
    failed = next(g for g in decision.gates if g.name == failing_gate)
    assert "needs" in failed.reason


def test_first_version_without_champion_skips_the_comparison_and_passes() -> None:
    decision = evaluate_gates(passing_figures(with_champion=False), THRESHOLDS)

    statuses = {g.name: g.status for g in decision.gates}
    assert statuses["champion_comparison"] == "skipped"
    assert decision.passed
    quality = next(g for g in decision.gates if g.name == "quality")
    assert [c.metric for c in quality.checks] == ["roc_auc"]


def test_raw_ranking_scores_may_leave_the_unit_interval() -> None:
    figures = replace(passing_figures(), "outputs", probabilistic=False, score_min=-4.0, score_max=6.0)

    assert evaluate_gates(figures, THRESHOLDS).passed


def test_time_slices_with_one_class_skip_the_spread_check_but_bootstrap_still_decides() -> None:
    figures = replace(passing_figures(), "stability", slice_auc=[0.9, None, None, None], time_slice_auc_spread=math.nan)

    stability = next(g for g in evaluate_gates(figures, THRESHOLDS).gates if g.name == "stability")

    assert stability.status == "pass"
    assert stability.checks[0].status == "skipped"
    assert "not measurable" in stability.checks[0].note


def test_thresholds_are_configurable() -> None:
    figures = replace(passing_figures(), "quality", roc_auc=0.80)

    assert not evaluate_gates(figures, THRESHOLDS).passed
    assert evaluate_gates(figures, dataclasses.replace(THRESHOLDS, min_roc_auc=0.75)).passed


def test_relaxed_thresholds_are_named_with_their_defaults() -> None:
    relaxed = dataclasses.replace(GateThresholds(), min_roc_auc=0.72, max_p99_latency_ms=80.0)

    changed = non_default_thresholds(relaxed)

    assert changed == {
        "min_roc_auc": {"value": 0.72, "default": 0.85},
        "max_p99_latency_ms": {"value": 80.0, "default": 50.0},
    }
    assert (
        describe_non_default_thresholds(changed)
        == "min_roc_auc 0.72 (default 0.85); max_p99_latency_ms 80 (default 50)"
    )
    assert non_default_thresholds(GateThresholds()) == {} and describe_non_default_thresholds({}) == "-"


def test_decision_serialises_to_strict_json() -> None:
    figures = replace(passing_figures(), "quality", roc_auc=math.nan)

    text = json.dumps(evaluate_gates(figures, THRESHOLDS).to_dict(), allow_nan=False)

    assert '"roc_auc"' in text and "NaN" not in text


PROMOTIONS = [
    # (case, status, validated_against, champion, force, reason, allowed, user_error, message part)
    ("passed vs current champion", "passed", "3", 3, False, None, True, False, "passed"),
    ("first promotion", "passed", "none", None, False, None, True, False, "passed"),
    ("failed gate", "failed", "3", 3, False, None, False, False, "failed the validation gate"),
    ("never validated", "not_validated", None, 3, False, None, False, False, "has not been validated"),
    ("stale: champion changed", "passed", "2", 3, False, None, False, False, "champion is now 3"),
    ("forced with reason", "failed", "3", 3, True, "hotfix", True, False, "forced"),
    ("forced without reason", "failed", "3", 3, True, " ", False, True, "--reason"),
]


@pytest.mark.parametrize(
    ("case", "status", "against", "champion", "force", "reason", "allowed", "user_error", "message"),
    PROMOTIONS,
    ids=[p[0] for p in PROMOTIONS],
)
def test_promotion_policy(
    case: str,
    status: str,
    against: str | None,
    champion: int | None,
    force: bool,
    reason: str | None,
    allowed: bool,
    user_error: bool,
    message: str,
) -> None:
    decision = promotion_decision(
        version=5,
        validation_status=status,
        validated_against=against,
        current_champion=champion,
        force=force,
        reason=reason,
    )

    assert decision.allowed is allowed
    assert decision.user_error is user_error
    assert message in decision.message
