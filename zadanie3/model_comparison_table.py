"""The version comparison table (``recsys registry compare`` -> ``artifacts/registry/versions.md``).

Columns as in the seed's comparison: ROC-AUC, accuracy, F1, ndcg@10 and inference time (p50/p99 of
scoring one request-sized block). With the held-out evaluation set present, every listed version is
scored on exactly those rows; without it the figures come from what the versions' runs logged
(their last validation, else training metrics) and the table says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zadanie3.settings import RegistrySettings

if TYPE_CHECKING:
    from zadanie3.registry_client import VersionInfo


@dataclass(frozen=True)
class ComparisonRow:
    version: int
    aliases: tuple[str, ...]
    roc_auc: float
    accuracy: float
    f1: float
    ndcg_at_k: float
    p50_ms: float
    p99_ms: float
    validation_status: str
    created_at: str
    source: str  # "eval set" | "logged metrics"


def _fmt(value: float, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def render_markdown(rows: Sequence[ComparisonRow], *, model_name: str, k: int, notes: Iterable[str] = ()) -> str:
    """A markdown table in the given row order (newest first); the best ndcg is bold."""
    best_ndcg = max((r.ndcg_at_k for r in rows if not math.isnan(r.ndcg_at_k)), default=float("nan"))
    lines = [
        f"# {model_name}: registered versions",
        "",
        f"| version | aliases | ROC-AUC | accuracy | F1 | ndcg@{k} | inference p50 ms | inference p99 ms "
        "| gate | registered | figures from |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        ndcg = _fmt(r.ndcg_at_k)
        if not math.isnan(r.ndcg_at_k) and r.ndcg_at_k == best_ndcg:
            ndcg = f"**{ndcg}**"
        lines.append(
            f"| {r.version} | {', '.join(r.aliases) or '–'} | {_fmt(r.roc_auc)} | {_fmt(r.accuracy)} | {_fmt(r.f1)} "
            f"| {ndcg} | {_fmt(r.p50_ms, 2)} | {_fmt(r.p99_ms, 2)} | {r.validation_status} | {r.created_at} "
            f"| {r.source} |"
        )
    notes = list(notes)
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def _pick(metrics: Mapping[str, float], validation_key: str, *training_names: str) -> float:
    """The version's own validation figure when logged, else the first training metric named like one of these."""
    if validation_key in metrics:
        return float(metrics[validation_key])
    training = sorted(k for k in metrics if not k.startswith("validation."))
    for name in training_names:
        for key in training:
            if key == name or key.endswith("." + name) or key.endswith("_" + name):
                return float(metrics[key])
    return float("nan")


def row_from_logged_metrics(info: VersionInfo, k: int) -> ComparisonRow:
    """A row from a version's run metrics: its last validation's figures, else its training metrics."""
    m = info.metrics
    return ComparisonRow(
        version=info.version,
        aliases=info.aliases,
        roc_auc=_pick(m, "validation.quality.roc_auc", "roc_auc", "auc"),
        accuracy=_pick(m, "validation.quality.accuracy", "accuracy"),
        f1=_pick(m, "validation.quality.f1", "f1"),
        ndcg_at_k=_pick(m, "validation.quality.ndcg_at_k", f"ndcg_at_{k}", f"ndcg{k}"),
        p50_ms=_pick(m, "validation.latency.p50_ms", "p50_ms"),
        p99_ms=_pick(m, "validation.latency.p99_ms", "p99_ms"),
        validation_status=info.validation_status,
        created_at=info.created_at,
        source="logged metrics",
    )


def build_comparison(
    settings: RegistrySettings, versions: Sequence[int] = (), *, eval_set_path: Path | None = None
) -> tuple[list[ComparisonRow], list[str]]:
    """Rows for ``versions`` (default: all), measured on the evaluation set when it exists."""
    from zadanie3 import registry_client as rc
    from zadanie3.evaluation_set import load_evaluation_set
    from zadanie3.gate_runner import MeasurementPlan, is_probabilistic, measure_latency, measure_quality

    infos = {info.version: info for info in rc.list_versions(settings)}
    wanted = list(versions) or sorted(infos, reverse=True)
    missing = [v for v in wanted if v not in infos]
    if missing:
        raise rc.ModelNotFound(f"model '{settings.model_name}' has no version(s) {', '.join(map(str, missing))}")
    plan = MeasurementPlan.from_settings(settings)
    path = eval_set_path or settings.effective_eval_set_path
    if not path.is_file():
        rows = [row_from_logged_metrics(infos[v], plan.k) for v in wanted]
        return rows, [f"{path} not found: figures are the versions' logged metrics, not one common data set."]
    eval_set = load_evaluation_set(path)
    rows = []
    for v in wanted:
        model = rc.load_ranker_version(v, settings)
        matrix = eval_set.matrix_for(model.feature_names)
        quality = measure_quality(model.score(matrix), eval_set, k=plan.k, probabilistic=is_probabilistic(model))
        latency = measure_latency(
            model, matrix, n_candidates=plan.latency_candidates, n_calls=plan.latency_calls, seed=plan.seed
        )
        info = infos[v]
        rows.append(
            ComparisonRow(
                version=v,
                aliases=info.aliases,
                roc_auc=quality.roc_auc,
                accuracy=quality.accuracy,
                f1=quality.f1,
                ndcg_at_k=quality.ndcg_at_k,
                p50_ms=latency.p50_ms,
                p99_ms=latency.p99_ms,
                validation_status=info.validation_status,
                created_at=info.created_at,
                source="eval set",
            )
        )
    summary = eval_set.summary()
    notes = [
        f"All versions scored on the same {summary['rows']:,} rows / {summary['queries']:,} ranked lists of {path} "
        f"({summary['time_start']} .. {summary['time_end']}, positive rate {summary['positive_rate']:.3f}).",
        f"Inference: one score() call on {plan.latency_candidates} candidates, {plan.latency_calls} calls after "
        "warm-up, single thread.",
        "Accuracy/F1: probability >= 0.5 for probabilistic objectives, otherwise the top share of rows equal to "
        "the positive rate is called positive.",
        "ndcg ties are broken pessimistically (negatives first).",
    ]
    return rows, notes


def write_comparison(markdown: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)
    return path
