"""The runner measures real figures: a trained ranker passes, broken scorers fail the gate they break."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.feature_definitions import RANKER_FEATURES
from zadanie1.ranker_artifact import load_ranker
from zadanie3.evaluation_set import EvaluationSet, load_evaluation_set
from zadanie3.gate_runner import MeasurementPlan, time_slices, validate_artifacts
from zadanie3.validation_gate import GateThresholds

PLAN = MeasurementPlan(bootstrap_resamples=100)
THRESHOLDS = GateThresholds()


@dataclass
class FakeBooster:
    params: dict[str, Any] = field(default_factory=lambda: {"objective": "binary"})


@dataclass
class WrappedScorer:
    """A real ranker with one defect injected (NaN, noise, slowness, or NaN on missing input)."""

    inner: Any
    defect: str
    feature_names: tuple[str, ...] = RANKER_FEATURES
    booster: Any = field(default_factory=FakeBooster)
    calls: int = 0

    def score(self, matrix: np.ndarray) -> np.ndarray:
        self.calls += 1
        scores = self.inner.score(np.nan_to_num(matrix))
        if self.defect == "nan" and len(scores) > 1:
            scores[0] = np.nan
        if self.defect == "noisy":
            scores = scores + np.random.default_rng().normal(0, 1e-3, len(scores))
        if self.defect == "slow" and len(matrix) == PLAN.latency_candidates and self.calls % 50 == 0:
            time.sleep(0.06)  # 4 of 200 timed calls take 60 ms: p99 > 50 ms
        if self.defect == "nan_on_missing":
            scores = np.where(np.isnan(matrix).any(axis=1), np.nan, scores)
        return scores


@pytest.fixture(scope="module")
def eval_set(eval_set_path: Path) -> EvaluationSet:
    return load_evaluation_set(eval_set_path)


def validate(model: Any, eval_set: EvaluationSet, champion: tuple[int, Any] | None = None):
    return validate_artifacts(
        model, eval_set, model_name="m", version=2, thresholds=THRESHOLDS, plan=PLAN, champion=champion
    )


def test_trained_ranker_passes_every_gate_on_held_out_data(good_ranker_dir: Path, eval_set: EvaluationSet) -> None:
    report = validate(load_ranker(good_ranker_dir), eval_set)

    assert report.passed, report.summary_lines()
    figures = report.figures
    assert figures.quality.roc_auc > 0.9
    assert figures.latency.n_calls == 200 and figures.latency.p99_ms < 50
    assert figures.outputs.n_nonfinite_with_missing == 0 and figures.outputs.missing_value_cases == 2 + len(
        RANKER_FEATURES
    )
    assert sum(r for r in figures.stability.slice_rows) == len(eval_set)
    assert report.to_dict()["gates"][4]["status"] == "skipped"


def test_shuffled_label_challenger_fails_quality_and_the_champion_comparison(
    good_ranker_dir: Path, bad_ranker_dir: Path, eval_set: EvaluationSet
) -> None:
    report = validate(load_ranker(bad_ranker_dir), eval_set, champion=(1, load_ranker(good_ranker_dir)))

    assert not report.passed
    assert {"quality", "champion_comparison"} <= set(report.failed_gates)
    comparison = report.figures.comparison
    assert comparison is not None and comparison.ndcg_delta_ci[1] < 0
    assert 0.35 < report.figures.quality.roc_auc < 0.65


def test_equal_models_pass_the_comparison_with_zero_difference(good_ranker_dir: Path, eval_set: EvaluationSet) -> None:
    model = load_ranker(good_ranker_dir)

    report = validate(model, eval_set, champion=(1, model))

    comparison = report.figures.comparison
    assert comparison is not None
    assert comparison.ndcg_delta == 0.0 and comparison.ndcg_delta_ci == (0.0, 0.0)
    assert "champion_comparison" not in report.failed_gates


@pytest.mark.parametrize(
    ("defect", "failing_gate"),
    [("nan", "outputs"), ("noisy", "outputs"), ("nan_on_missing", "outputs"), ("slow", "latency")],
)
def test_injected_defect_fails_its_gate(
    defect: str, failing_gate: str, good_ranker_dir: Path, eval_set: EvaluationSet
) -> None:
    report = validate(WrappedScorer(load_ranker(good_ranker_dir), defect), eval_set)

    assert failing_gate in report.failed_gates


def test_time_slices_split_rows_by_time_and_keep_equal_times_together() -> None:
    times = np.array(["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[ns]")

    assert time_slices(times, 2).tolist() == [0, 0, 1, 1]
    assert time_slices(times[:2], 4).tolist() == [0, 0]
