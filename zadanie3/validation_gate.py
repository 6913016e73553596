"""The validation gate: a pure function of measured figures and thresholds -> pass/fail per gate.

Nothing here measures, loads or logs anything (that is ``gate_runner``), so every decision can be
tested with a table of numbers. Five gates, each a list of checks ``value <op> threshold``:

- ``quality``: ROC-AUC >= min_roc_auc; with a champion, ndcg@k(challenger) - ndcg@k(champion) >= -max_ndcg_drop.
- ``latency``: p99 of scoring ``min_latency_candidates`` rows < max_p99_latency_ms, over >= min_latency_calls calls.
- ``stability``: ROC-AUC spread (max - min) across time slices <= max; bootstrap std of ROC-AUC <= max.
- ``outputs``: no NaN/inf, scores in range, deterministic, finite with missing feature values, feature order.
- ``champion_comparison``: the offline A/B on identical rows, rule in :data:`DECISION_RULE`.

A gate with nothing to compare (first version: no champion) is ``skipped`` and does not block.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Status = Literal["pass", "fail", "skipped"]

DECISION_RULE = (
    "Offline A/B on identical held-out rows: per query, d = ndcg@k(challenger) - ndcg@k(champion); queries are "
    "resampled with replacement (paired bootstrap) to get 95% intervals of mean d and of the ROC-AUC difference. "
    "The challenger is accepted when it is not meaningfully worse (non-inferiority): both lower bounds >= -ab_margin. "
    "Promotion needs every gate to pass (a skipped gate does not block)."
)

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class GateThresholds:
    """Configured limits (defaults = the seed's ModelValidator: AUC > 0.85, latency < 50 ms)."""

    min_roc_auc: float = 0.85
    ndcg_k: int = 10
    max_ndcg_drop: float = 0.01
    max_p99_latency_ms: float = 50.0
    min_latency_calls: int = 200
    min_latency_candidates: int = 500
    max_time_slice_auc_spread: float = 0.05
    max_bootstrap_auc_std: float = 0.02
    ab_margin: float = 0.02
    max_abs_score: float = 1e6
    determinism_tolerance: float = 1e-9

    @classmethod
    def from_settings(cls, settings: Any) -> GateThresholds:
        """Thresholds from ``zadanie3.settings.RegistrySettings`` (the ``gate_*`` fields)."""
        return cls(
            min_roc_auc=settings.gate_min_roc_auc,
            ndcg_k=settings.gate_ndcg_k,
            max_ndcg_drop=settings.gate_max_ndcg_drop,
            max_p99_latency_ms=settings.gate_max_p99_latency_ms,
            min_latency_calls=settings.gate_min_latency_calls,
            min_latency_candidates=settings.gate_latency_candidates,
            max_time_slice_auc_spread=settings.gate_max_time_slice_auc_spread,
            max_bootstrap_auc_std=settings.gate_max_bootstrap_auc_std,
            ab_margin=settings.gate_ab_margin,
            max_abs_score=settings.gate_max_abs_score,
        )


def non_default_thresholds(thresholds: GateThresholds) -> dict[str, dict[str, float]]:
    """Thresholds that differ from the production defaults: ``{name: {"value": v, "default": d}}``.

    Recorded in every report and on the version, so a gate passed under a relaxed bar (e.g. the demo's
    ROC-AUC bar) says so wherever the result is read.
    """
    defaults = GateThresholds()
    return {
        f.name: {"value": getattr(thresholds, f.name), "default": getattr(defaults, f.name)}
        for f in fields(GateThresholds)
        if getattr(thresholds, f.name) != getattr(defaults, f.name)
    }


def describe_non_default_thresholds(changed: Mapping[str, Mapping[str, float]]) -> str:
    """``"min_roc_auc 0.72 (default 0.85)"`` per changed threshold, ``"-"`` when none changed."""
    return "; ".join(f"{name} {v['value']:g} (default {v['default']:g})" for name, v in changed.items()) or "-"


@dataclass(frozen=True)
class QualityFigures:
    roc_auc: float
    ndcg_at_k: float
    accuracy: float
    f1: float
    decision_threshold: float  # score cut used for accuracy/F1
    k: int
    rows: int
    queries_with_positive: int


@dataclass(frozen=True)
class LatencyFigures:
    """Wall time of one ``score`` call on ``n_candidates`` rows, in milliseconds."""

    n_calls: int
    n_candidates: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


@dataclass(frozen=True)
class StabilityFigures:
    slice_auc: list[float | None]  # None: the slice had one class only
    slice_ndcg: list[float | None]
    slice_rows: list[int]
    time_slice_auc_spread: float  # NaN when fewer than two slices have both classes
    bootstrap_auc_std: float
    bootstrap_ndcg_std: float
    bootstrap_auc_ci: tuple[float, float]
    n_resamples: int


@dataclass(frozen=True)
class OutputFigures:
    n_scored: int
    n_nonfinite: int
    score_min: float
    score_max: float
    probabilistic: bool  # objective outputs probabilities, so scores must lie in [0, 1]
    max_repeat_diff: float  # same input scored twice
    max_single_vs_batch_diff: float  # rows scored one by one vs in one batch
    max_permutation_diff: float  # rows scored in reverse order
    missing_value_cases: int  # matrices with NaN features that were scored
    n_nonfinite_with_missing: int
    feature_names_match: bool  # model input order == shared.feature_definitions.RANKER_FEATURES


@dataclass(frozen=True)
class ComparisonFigures:
    champion_version: int
    champion_roc_auc: float
    champion_ndcg_at_k: float
    challenger_roc_auc: float
    challenger_ndcg_at_k: float
    ndcg_delta: float  # mean over queries of challenger - champion
    ndcg_delta_ci: tuple[float, float]
    auc_delta: float
    auc_delta_ci: tuple[float, float]
    win_rate: float  # share of queries where the challenger's ndcg is higher
    loss_rate: float
    n_queries: int
    n_resamples: int


@dataclass(frozen=True)
class MeasuredFigures:
    quality: QualityFigures
    latency: LatencyFigures
    stability: StabilityFigures
    outputs: OutputFigures
    comparison: ComparisonFigures | None = None


@dataclass(frozen=True)
class Check:
    metric: str
    value: float | bool | None
    op: str
    threshold: float | bool | None
    status: Status
    note: str = ""

    def describe(self) -> str:
        note = f" {self.note}" if self.note else ""
        return f"{self.metric} {_fmt(self.value)} (needs {self.op} {_fmt(self.threshold)}){note}"


@dataclass(frozen=True)
class GateResult:
    name: str
    status: Status
    checks: list[Check]
    reason: str

    @property
    def passed(self) -> bool:
        return self.status != "fail"


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    gates: list[GateResult]
    decision_rule: str = DECISION_RULE
    failed_gates: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        lines = []
        for gate in self.gates:
            lines.append(f"{gate.name:<20} {gate.status.upper():<8} {gate.reason}")
        lines.append(f"{'decision':<20} {'PASS' if self.passed else 'FAIL'}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _check(metric: str, value: float | bool | None, op: str, threshold: float | bool | None, note: str = "") -> Check:
    # NaN compares False, so an unmeasurable figure fails its check
    ok = value is not None and threshold is not None and bool(_OPS[op](value, threshold))
    return Check(metric, value, op, threshold, "pass" if ok else "fail", note)


def _gate(name: str, checks: list[Check]) -> GateResult:
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        return GateResult(name, "fail", checks, "; ".join(c.describe() for c in failed))
    if checks and all(c.status == "skipped" for c in checks):
        return GateResult(name, "skipped", checks, "; ".join(c.note for c in checks if c.note) or "skipped")
    shown = [c.describe() for c in checks if c.status == "pass"][:3]
    shown += [f"{c.metric} skipped: {c.note}" for c in checks if c.status == "skipped"]
    return GateResult(name, "pass", checks, "; ".join(shown))


def quality_gate(figures: MeasuredFigures, t: GateThresholds) -> GateResult:
    q = figures.quality
    checks = [_check("roc_auc", q.roc_auc, ">=", t.min_roc_auc)]
    if figures.comparison is not None:
        delta = q.ndcg_at_k - figures.comparison.champion_ndcg_at_k
        checks.append(
            _check(
                f"ndcg@{q.k} - champion",
                delta,
                ">=",
                -t.max_ndcg_drop,
                f"(champion v{figures.comparison.champion_version})",
            )
        )
    return _gate("quality", checks)


def latency_gate(figures: MeasuredFigures, t: GateThresholds) -> GateResult:
    lat = figures.latency
    return _gate(
        "latency",
        [
            _check(f"p99_ms@{lat.n_candidates}", lat.p99_ms, "<", t.max_p99_latency_ms),
            _check("calls", lat.n_calls, ">=", t.min_latency_calls),
            _check("candidates_per_call", lat.n_candidates, ">=", t.min_latency_candidates),
        ],
    )


def stability_gate(figures: MeasuredFigures, t: GateThresholds) -> GateResult:
    s = figures.stability
    valid_slices = sum(v is not None for v in s.slice_auc)
    if valid_slices >= 2:
        spread = _check("time_slice_auc_spread", s.time_slice_auc_spread, "<=", t.max_time_slice_auc_spread)
    else:
        spread = Check(
            "time_slice_auc_spread",
            None,
            "<=",
            t.max_time_slice_auc_spread,
            "skipped",
            f"not measurable: {valid_slices} time slice(s) with both classes",
        )
    return _gate("stability", [spread, _check("bootstrap_auc_std", s.bootstrap_auc_std, "<=", t.max_bootstrap_auc_std)])


def outputs_gate(figures: MeasuredFigures, t: GateThresholds) -> GateResult:
    o = figures.outputs
    low, high = (0.0, 1.0) if o.probabilistic else (-t.max_abs_score, t.max_abs_score)
    return _gate(
        "outputs",
        [
            _check("nonfinite_scores", o.n_nonfinite, "==", 0),
            _check("score_min", o.score_min, ">=", low),
            _check("score_max", o.score_max, "<=", high),
            _check("repeat_diff", o.max_repeat_diff, "<=", t.determinism_tolerance),
            _check("single_vs_batch_diff", o.max_single_vs_batch_diff, "<=", t.determinism_tolerance),
            _check("permutation_diff", o.max_permutation_diff, "<=", t.determinism_tolerance),
            _check("missing_value_cases", o.missing_value_cases, ">=", 1),
            _check("nonfinite_with_missing_values", o.n_nonfinite_with_missing, "==", 0),
            _check("feature_order_matches_registry", o.feature_names_match, "==", True),
        ],
    )


def champion_comparison_gate(figures: MeasuredFigures, t: GateThresholds) -> GateResult:
    c = figures.comparison
    if c is None:
        return _gate(
            "champion_comparison",
            [Check("champion", None, "==", None, "skipped", "no champion to compare with (first promotion)")],
        )
    return _gate(
        "champion_comparison",
        [
            _check("ndcg_delta_ci_low", c.ndcg_delta_ci[0], ">=", -t.ab_margin, f"(mean {c.ndcg_delta:+.4f})"),
            _check("auc_delta_ci_low", c.auc_delta_ci[0], ">=", -t.ab_margin, f"(mean {c.auc_delta:+.4f})"),
        ],
    )


GATES = (quality_gate, latency_gate, stability_gate, outputs_gate, champion_comparison_gate)


def evaluate_gates(figures: MeasuredFigures, thresholds: GateThresholds) -> GateDecision:
    """Apply every gate; the version passes when no gate failed."""
    results = [gate(figures, thresholds) for gate in GATES]
    failed = [r.name for r in results if r.status == "fail"]
    return GateDecision(passed=not failed, gates=results, failed_gates=failed)


def json_safe(value: Any) -> Any:
    """Recursively replace NaN/inf by None and tuples by lists so ``json.dumps`` is strict-JSON valid."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return json_safe(value.item())
    return value


@dataclass(frozen=True)
class PromotionDecision:
    allowed: bool
    message: str
    user_error: bool = False  # a misuse (e.g. --force without --reason), not a gate refusal


def promotion_decision(
    *,
    version: int,
    validation_status: str,
    validated_against: str | None,
    current_champion: int | None,
    force: bool,
    reason: str | None,
    report_id: str | None = None,
) -> PromotionDecision:
    """May ``version`` become champion? Pure policy over the version's validation tags.

    Allowed when its gate passed against the champion that is current now (a report made against
    another champion is stale). ``force`` overrides a refusal but only with a non-empty reason.
    """
    if force and not (reason and reason.strip()):
        return PromotionDecision(False, "--force needs --reason (it is recorded on the version)", user_error=True)
    if current_champion == version:
        return PromotionDecision(True, f"v{version} is already the champion")
    expected = "none" if current_champion is None else str(current_champion)
    if validation_status == "passed" and validated_against == expected:
        return PromotionDecision(True, "validation gate passed")
    if validation_status == "passed":
        problem = (
            f"v{version} was validated against champion {validated_against or '?'} but the champion is now "
            f"{expected}; run `recsys registry validate {version}` again"
        )
    elif validation_status == "failed":
        problem = f"v{version} failed the validation gate (report {report_id or '?'}, validation_{version}.json)"
    else:
        problem = f"v{version} has not been validated; run `recsys registry validate {version}` first"
    if force:
        return PromotionDecision(True, f"forced: {problem}")
    return PromotionDecision(False, f"promotion refused: {problem}; use --force --reason TEXT to override")
