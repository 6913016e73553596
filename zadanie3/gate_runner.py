"""Measures what the validation gate decides on, for one version (and the champion) on the same held-out rows.

- quality: ROC-AUC over all rows, ndcg@k per query, accuracy/F1 at a stated threshold;
- latency: wall time of ``RankerArtifact.score`` on ``n_candidates`` rows, ``n_calls`` calls after warm-up;
- stability: ROC-AUC / ndcg per time slice (by ``event_time``) and over query-level bootstrap resamples;
- outputs: finiteness, range, determinism (repeat, one-by-one vs batch, reversed order), NaN features;
- champion comparison: paired per-query bootstrap of the ndcg and ROC-AUC differences.

``run_validation`` wires it to the registry: loads both rankers, applies ``validation_gate.evaluate_gates``,
writes ``artifacts/registry/validation_<version>.json`` and records it on the version and its run.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.feature_definitions import RANKER_FEATURES
from shared.run_stamp import run_stamp
from zadanie3.evaluation_set import EvaluationSet, load_evaluation_set
from zadanie3.gate_metrics import RankedScores, accuracy_and_f1, decision_threshold, ndcg_per_query
from zadanie3.settings import CHAMPION, RegistrySettings
from zadanie3.validation_gate import (
    ComparisonFigures,
    GateDecision,
    GateThresholds,
    LatencyFigures,
    MeasuredFigures,
    OutputFigures,
    QualityFigures,
    StabilityFigures,
    describe_non_default_thresholds,
    evaluate_gates,
    json_safe,
    non_default_thresholds,
)

PROBABILISTIC_OBJECTIVES = frozenset({"binary", "cross_entropy", "xentropy", "cross_entropy_lambda", "xentlambda"})
WARMUP_CALLS = 10
OUTPUT_SAMPLE_ROWS = 500
SINGLE_ROW_CHECKS = 20
MISSING_SHARE = 0.2  # share of entries blanked in the random-missing case


class Scorer(Protocol):
    """What the runner needs of a model (``zadanie1.ranker_artifact.RankerArtifact`` fits)."""

    feature_names: tuple[str, ...]
    booster: Any

    def score(self, matrix: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class MeasurementPlan:
    """How much to measure (sizes, repetitions, seed); thresholds live in ``GateThresholds``."""

    k: int = 10
    latency_candidates: int = 500
    latency_calls: int = 200
    time_slices: int = 4
    bootstrap_resamples: int = 200
    seed: int = 20240601

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> MeasurementPlan:
        return cls(
            k=settings.gate_ndcg_k,
            latency_candidates=settings.gate_latency_candidates,
            latency_calls=settings.gate_latency_calls,
            time_slices=settings.gate_time_slices,
            bootstrap_resamples=settings.gate_bootstrap_resamples,
            seed=settings.gate_seed,
        )


def is_probabilistic(model: Scorer) -> bool:
    """Does the model's objective output probabilities (so scores must lie in [0, 1])?"""
    params = getattr(model.booster, "params", None) or {}
    return str(params.get("objective", "")).split(" ")[0] in PROBABILISTIC_OBJECTIVES


def measure_quality(scores: np.ndarray, eval_set: EvaluationSet, *, k: int, probabilistic: bool) -> QualityFigures:
    labels = eval_set.labels
    ndcg, _ = ndcg_per_query(labels, scores, eval_set.query_ids, k)
    threshold = decision_threshold(scores, labels, probabilistic=probabilistic)
    accuracy, f1 = accuracy_and_f1(labels, scores, threshold)
    return QualityFigures(
        roc_auc=RankedScores.of(scores, labels).auc(),
        ndcg_at_k=float(ndcg.mean()) if len(ndcg) else float("nan"),
        accuracy=accuracy,
        f1=f1,
        decision_threshold=threshold,
        k=k,
        rows=len(labels),
        queries_with_positive=len(ndcg),
    )


def latency_block(matrix: np.ndarray, n_candidates: int, seed: int) -> np.ndarray:
    """``n_candidates`` rows drawn from the matrix (with replacement when it is smaller), contiguous float32."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(matrix), size=n_candidates, replace=len(matrix) < n_candidates)
    return np.ascontiguousarray(matrix[rows], dtype=np.float32)


def measure_latency(model: Scorer, matrix: np.ndarray, *, n_candidates: int, n_calls: int, seed: int) -> LatencyFigures:
    """Time ``model.score`` on one request-sized block, ``n_calls`` times after ``WARMUP_CALLS`` untimed calls."""
    block = latency_block(matrix, n_candidates, seed)
    for _ in range(WARMUP_CALLS):
        model.score(block)
    gc.collect()  # start from a clean heap, as a serving worker does after warm-up
    timings = np.empty(n_calls)
    for i in range(n_calls):
        started = time.perf_counter_ns()
        model.score(block)
        timings[i] = (time.perf_counter_ns() - started) / 1e6
    return LatencyFigures(
        n_calls=n_calls,
        n_candidates=n_candidates,
        p50_ms=float(np.percentile(timings, 50)),
        p95_ms=float(np.percentile(timings, 95)),
        p99_ms=float(np.percentile(timings, 99)),
        max_ms=float(timings.max()),
        mean_ms=float(timings.mean()),
    )


def time_slices(event_time: np.ndarray, n_slices: int) -> np.ndarray:
    """Slice index 0..n-1 per row, by row-count quantiles of time; rows at one instant share a slice."""
    t = event_time.astype("int64")
    sorted_t = np.sort(t)
    return np.minimum(np.searchsorted(sorted_t, t, side="left") * n_slices // max(len(t), 1), n_slices - 1)


def _bootstrap_counts(n_queries: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_queries) multiplicities of queries drawn with replacement."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_queries, size=(n_resamples, n_queries))
    return np.stack([np.bincount(row, minlength=n_queries) for row in draws])


def measure_stability(
    scores: np.ndarray, eval_set: EvaluationSet, *, k: int, n_slices: int, n_resamples: int, seed: int
) -> StabilityFigures:
    labels, queries = eval_set.labels, eval_set.query_ids
    slice_of_row = time_slices(eval_set.event_time, n_slices)
    slice_auc: list[float | None] = []
    slice_ndcg: list[float | None] = []
    slice_rows: list[int] = []
    for s in range(n_slices):
        mask = slice_of_row == s
        slice_rows.append(int(mask.sum()))
        sub_labels = labels[mask]
        if mask.sum() == 0 or sub_labels.min() == sub_labels.max():
            slice_auc.append(None)
            slice_ndcg.append(None)
            continue
        slice_auc.append(RankedScores.of(scores[mask], sub_labels).auc())
        _, dense = np.unique(queries[mask], return_inverse=True)
        values, _ = ndcg_per_query(sub_labels, scores[mask], dense, k)
        slice_ndcg.append(float(values.mean()) if len(values) else None)
    valid = [a for a in slice_auc if a is not None]
    spread = float(max(valid) - min(valid)) if len(valid) >= 2 else float("nan")

    ranked = RankedScores.of(scores, labels)
    ndcg, ndcg_queries = ndcg_per_query(labels, scores, queries, k)
    n_queries = int(queries.max()) + 1
    counts = _bootstrap_counts(n_queries, n_resamples, seed)
    aucs = np.array([ranked.auc(c[queries]) for c in counts])
    ndcgs = np.array([np.average(ndcg, weights=c[ndcg_queries]) if c[ndcg_queries].sum() else np.nan for c in counts])
    aucs = aucs[np.isfinite(aucs)]
    return StabilityFigures(
        slice_auc=slice_auc,
        slice_ndcg=slice_ndcg,
        slice_rows=slice_rows,
        time_slice_auc_spread=spread,
        bootstrap_auc_std=float(aucs.std(ddof=1)) if len(aucs) > 1 else float("nan"),
        bootstrap_ndcg_std=float(np.nanstd(ndcgs, ddof=1)) if len(ndcgs) > 1 else float("nan"),
        bootstrap_auc_ci=(float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5)))
        if len(aucs)
        else (float("nan"), float("nan")),
        n_resamples=n_resamples,
    )


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.abs(np.where(both_nan, 0.0, a - b))
    return float(np.nan_to_num(diff, nan=np.inf).max()) if len(diff) else 0.0


def missing_value_cases(sample: np.ndarray, seed: int) -> list[np.ndarray]:
    """Matrices with missing features: a random share blanked, each column blanked, everything blanked."""
    rng = np.random.default_rng(seed)
    random_blank = sample.copy()
    random_blank[rng.random(sample.shape) < MISSING_SHARE] = np.nan
    cases = [random_blank]
    for column in range(sample.shape[1]):
        blanked = sample.copy()
        blanked[:, column] = np.nan
        cases.append(blanked)
    cases.append(np.full_like(sample, np.nan))
    return cases


def measure_outputs(
    model: Scorer, matrix: np.ndarray, scores: np.ndarray, *, probabilistic: bool, seed: int
) -> OutputFigures:
    """Output checks; ``scores`` are the model's scores of ``matrix`` (already computed for quality)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(matrix), size=min(OUTPUT_SAMPLE_ROWS, len(matrix)), replace=False)
    sample = np.ascontiguousarray(matrix[rows])
    batch = model.score(sample)
    repeat = model.score(sample.copy())
    reversed_scores = model.score(np.ascontiguousarray(sample[::-1]))[::-1]
    n_single = min(SINGLE_ROW_CHECKS, len(sample))
    single = np.array([model.score(sample[i : i + 1])[0] for i in range(n_single)])
    cases = missing_value_cases(sample, seed)
    nonfinite_missing = sum(int((~np.isfinite(model.score(case))).sum()) for case in cases)
    finite = scores[np.isfinite(scores)]
    return OutputFigures(
        n_scored=len(scores),
        n_nonfinite=int((~np.isfinite(scores)).sum()),
        score_min=float(finite.min()) if len(finite) else float("nan"),
        score_max=float(finite.max()) if len(finite) else float("nan"),
        probabilistic=probabilistic,
        max_repeat_diff=_max_abs_diff(batch, repeat),
        max_single_vs_batch_diff=_max_abs_diff(batch[:n_single], single),
        max_permutation_diff=_max_abs_diff(batch, reversed_scores),
        missing_value_cases=len(cases),
        n_nonfinite_with_missing=nonfinite_missing,
        feature_names_match=tuple(model.feature_names) == RANKER_FEATURES,
    )


def measure_comparison(
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray,
    eval_set: EvaluationSet,
    *,
    champion_version: int,
    k: int,
    n_resamples: int,
    seed: int,
) -> ComparisonFigures:
    """Paired comparison on identical rows: resampling whole queries keeps each pair together."""
    labels, queries = eval_set.labels, eval_set.query_ids
    ndcg_chal, kept = ndcg_per_query(labels, challenger_scores, queries, k)
    ndcg_champ, _ = ndcg_per_query(labels, champion_scores, queries, k)
    delta = ndcg_chal - ndcg_champ
    ranked_chal, ranked_champ = RankedScores.of(challenger_scores, labels), RankedScores.of(champion_scores, labels)
    counts = _bootstrap_counts(int(queries.max()) + 1, n_resamples, seed + 1)
    ndcg_deltas, auc_deltas = [], []
    for c in counts:
        weights = c[kept]
        if weights.sum():
            ndcg_deltas.append(np.average(delta, weights=weights))
        row_weights = c[queries]
        auc_deltas.append(ranked_chal.auc(row_weights) - ranked_champ.auc(row_weights))
    nd, ad = np.array(ndcg_deltas), np.array(auc_deltas)
    ad = ad[np.isfinite(ad)]
    auc_chal, auc_champ = ranked_chal.auc(), ranked_champ.auc()
    return ComparisonFigures(
        champion_version=champion_version,
        champion_roc_auc=auc_champ,
        champion_ndcg_at_k=float(ndcg_champ.mean()) if len(ndcg_champ) else float("nan"),
        challenger_roc_auc=auc_chal,
        challenger_ndcg_at_k=float(ndcg_chal.mean()) if len(ndcg_chal) else float("nan"),
        ndcg_delta=float(delta.mean()) if len(delta) else float("nan"),
        ndcg_delta_ci=_ci(nd),
        auc_delta=auc_chal - auc_champ,
        auc_delta_ci=_ci(ad),
        win_rate=float(np.mean(delta > 0)) if len(delta) else float("nan"),
        loss_rate=float(np.mean(delta < 0)) if len(delta) else float("nan"),
        n_queries=len(delta),
        n_resamples=n_resamples,
    )


def _ci(values: np.ndarray) -> tuple[float, float]:
    if len(values) == 0:
        return float("nan"), float("nan")
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def measure_figures(
    challenger: Scorer,
    eval_set: EvaluationSet,
    plan: MeasurementPlan,
    *,
    champion: tuple[int, Scorer] | None = None,
) -> MeasuredFigures:
    """Every figure the gate needs, challenger and champion scored on the very same matrix."""
    matrix = eval_set.matrix_for(challenger.feature_names)
    scores = challenger.score(matrix)
    probabilistic = is_probabilistic(challenger)
    comparison = None
    if champion is not None:
        champion_version, champion_model = champion
        champion_scores = champion_model.score(eval_set.matrix_for(champion_model.feature_names))
        comparison = measure_comparison(
            scores,
            champion_scores,
            eval_set,
            champion_version=champion_version,
            k=plan.k,
            n_resamples=plan.bootstrap_resamples,
            seed=plan.seed,
        )
    return MeasuredFigures(
        quality=measure_quality(scores, eval_set, k=plan.k, probabilistic=probabilistic),
        latency=measure_latency(
            challenger, matrix, n_candidates=plan.latency_candidates, n_calls=plan.latency_calls, seed=plan.seed
        ),
        stability=measure_stability(
            scores,
            eval_set,
            k=plan.k,
            n_slices=plan.time_slices,
            n_resamples=plan.bootstrap_resamples,
            seed=plan.seed,
        ),
        outputs=measure_outputs(challenger, matrix, scores, probabilistic=probabilistic, seed=plan.seed),
        comparison=comparison,
    )


@dataclass(frozen=True)
class ValidationReport:
    """What ``recsys registry validate`` produces: the decision with every figure and threshold."""

    report_id: str
    model_name: str
    version: int
    champion_version: int | None
    passed: bool
    failed_gates: list[str]
    decision: GateDecision
    figures: MeasuredFigures
    thresholds: GateThresholds
    plan: MeasurementPlan
    eval_set: dict[str, Any]
    measured_at: str
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "report_id": self.report_id,
                "model_name": self.model_name,
                "version": self.version,
                "champion_version": self.champion_version,
                "passed": self.passed,
                "failed_gates": self.failed_gates,
                "gates": asdict(self.decision)["gates"],
                "decision_rule": self.decision.decision_rule,
                "figures": asdict(self.figures),
                "thresholds": asdict(self.thresholds),
                "non_default_thresholds": non_default_thresholds(self.thresholds),
                "plan": asdict(self.plan),
                "eval_set": self.eval_set,
                "measured_at": self.measured_at,
                "duration_s": round(self.duration_s, 3),
            }
        )

    def summary_lines(self) -> list[str]:
        champion = f"champion v{self.champion_version}" if self.champion_version is not None else "no champion"
        head = f"{self.model_name} v{self.version} vs {champion} on {self.eval_set.get('rows', 0):,} rows"
        changed = non_default_thresholds(self.thresholds)
        note = [f"{'thresholds':<20} {'CHANGED':<8} {describe_non_default_thresholds(changed)}"] if changed else []
        return [head, *note, *self.decision.summary_lines()]


def report_path(settings: RegistrySettings, version: int) -> Path:
    return settings.registry_dir / f"validation_{version}.json"


def validate_artifacts(
    challenger: Scorer,
    eval_set: EvaluationSet,
    *,
    model_name: str,
    version: int,
    thresholds: GateThresholds,
    plan: MeasurementPlan,
    champion: tuple[int, Scorer] | None = None,
    eval_set_source: str = "",
) -> ValidationReport:
    """Measure and decide without touching the registry (used by ``run_validation`` and by tests)."""
    started = time.perf_counter()
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=0)
    figures = measure_figures(challenger, eval_set, plan, champion=champion)
    decision = evaluate_gates(figures, thresholds)
    return ValidationReport(
        report_id=f"validation-{model_name}-v{version}-{stamp.strftime('%Y%m%dT%H%M%SZ')}",
        model_name=model_name,
        version=version,
        champion_version=None if champion is None else champion[0],
        passed=decision.passed,
        failed_gates=decision.failed_gates,
        decision=decision,
        figures=figures,
        thresholds=thresholds,
        plan=plan,
        eval_set={"path": eval_set_source, **eval_set.summary()},
        measured_at=stamp.isoformat().replace("+00:00", "Z"),
        duration_s=time.perf_counter() - started,
    )


def run_validation(
    version: int, settings: RegistrySettings, *, eval_set_path: Path | None = None
) -> tuple[ValidationReport, Path]:
    """Validate a registered version against the current champion; save and record the report.

    Returns the report and the JSON path (``artifacts/registry/validation_<version>.json``).
    """
    from zadanie3 import registry_client as rc

    client = rc.connect(settings)
    rc.get_version(version, settings, client)  # clear error when the version does not exist
    champion_version = rc.resolve_alias(CHAMPION, settings)
    challenger = rc.load_ranker_version(version, settings)
    champion = None
    if champion_version is not None and champion_version != version:
        champion = (champion_version, rc.load_ranker_version(champion_version, settings))
    path = eval_set_path or settings.effective_eval_set_path
    eval_set = load_evaluation_set(path, feature_names=challenger.feature_names)
    report = validate_artifacts(
        challenger,
        eval_set,
        model_name=settings.model_name,
        version=version,
        thresholds=GateThresholds.from_settings(settings),
        plan=MeasurementPlan.from_settings(settings),
        champion=champion,
        eval_set_source=str(path),
    )
    out = report_path(settings, version)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {**report.to_dict(), "run": run_stamp()}  # commit and time, for make report
    out.write_text(json.dumps(payload, indent=2, allow_nan=False))
    rc.record_validation(version, payload, out, settings)
    return report, out
