"""The seven-classifier comparison (the seed's table), extended with ranking metrics on the test window.

Every model trains on the same (negative-sampled) training window and is scored on the same test
window, whose rows are *all* candidates of the sampled test users. Classification metrics use the
binary "any interaction" label at threshold 0.5 (decision value 0 for the SVM); ranking metrics rank
each user's candidates by the model's score and count every product the user touched in the test
window as relevant — including ones the candidate stage missed.

Models that cannot train on the full set in reasonable time train on a stratified subsample
(SVM always, GradientBoosting above ``gradient_boosting_max_rows``); their row says so in its name.
``inference_time_ms`` is the measured wall time of scoring the whole test matrix divided by its rows.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zadanie1.ranker_training import TrainedModel, ranking_scores
from zadanie1.ranking_dataset import RankingDataset
from zadanie1.settings import TrainingSettings

CLASSIFICATION_COLUMNS = (
    "accuracy",
    "f1_score",
    "false_negatives",
    "false_positives",
    "inference_time_ms",
    "precision",
    "recall",
    "roc_auc",
    "specificity",
    "training_time_seconds",
    "true_negatives",
    "true_positives",
)
MODEL_ORDER = (
    "GradientBoosting",
    "SVM",
    "CatBoost",
    "LightGBM",
    "XGBoost",
    "RandomForest",
    "LogisticRegression",
)


def ranking_columns(k: int) -> tuple[str, ...]:
    return (f"precision@{k}", f"hitrate@{k}", f"ndcg@{k}", f"map@{k}")


@dataclass(frozen=True)
class ModelSpec:
    """How to build one comparison model; ``max_train_rows`` = stratified subsample size (None = all)."""

    name: str
    build: Callable[[], Any]
    params: dict[str, Any]
    max_train_rows: int | None = None
    uses_decision_function: bool = False


def _signed_log(x: np.ndarray) -> np.ndarray:
    """Compress heavy-tailed counts for the linear / kernel models (sign(x) * log1p(|x|))."""
    return np.sign(x) * np.log1p(np.abs(x))


def model_specs(settings: TrainingSettings) -> list[ModelSpec]:
    """The seed's seven classifiers with modest, documented hyper-parameters (LightGBM is trained elsewhere)."""
    from catboost import CatBoostClassifier
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    from sklearn.svm import SVC
    from xgboost import XGBClassifier

    seed, jobs = settings.seed, settings.n_jobs
    gb = {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.8}
    svm = {"kernel": "rbf", "C": 1.0, "gamma": "scale"}
    cat = {"iterations": 300, "depth": 6, "learning_rate": 0.1}
    xgb = {"n_estimators": 300, "max_depth": 6, "learning_rate": 0.1, "tree_method": "hist", "subsample": 0.8}
    rf = {"n_estimators": 100, "max_depth": 12, "min_samples_leaf": 5}
    lr = {"C": 1.0, "max_iter": 1000}

    def scaled(model: Any) -> Any:
        return make_pipeline(FunctionTransformer(_signed_log), StandardScaler(), model)

    return [
        ModelSpec(
            "GradientBoosting",
            lambda: GradientBoostingClassifier(random_state=seed, **gb),
            gb,
            max_train_rows=settings.gradient_boosting_max_rows,
        ),
        ModelSpec(
            "SVM",
            lambda: scaled(SVC(random_state=seed, **svm)),
            {**svm, "preprocessing": "signed log1p + standard scaling"},
            max_train_rows=settings.svm_max_rows,
            uses_decision_function=True,
        ),
        ModelSpec(
            "CatBoost",
            lambda: CatBoostClassifier(
                random_seed=seed, thread_count=jobs, verbose=0, allow_writing_files=False, **cat
            ),
            cat,
        ),
        ModelSpec(
            "XGBoost",
            lambda: XGBClassifier(random_state=seed, n_jobs=jobs, eval_metric="logloss", **xgb),
            xgb,
        ),
        ModelSpec(
            "RandomForest",
            lambda: RandomForestClassifier(random_state=seed, n_jobs=settings.forest_n_jobs, **rf),
            rf,
        ),
        ModelSpec(
            "LogisticRegression",
            lambda: scaled(LogisticRegression(**lr)),
            {**lr, "preprocessing": "signed log1p + standard scaling"},
        ),
    ]


def stratified_subsample(labels: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """Row indices of a seeded sample of ``max_rows`` keeping the class shares (all rows if fewer)."""
    n = len(labels)
    if n <= max_rows:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        take = max(1, round(max_rows * len(members) / n))
        chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def train_spec(spec: ModelSpec, train: RankingDataset, settings: TrainingSettings) -> TrainedModel:
    """Fit one comparison model (on its subsample when it has one)."""
    labels = train.labels
    rows = np.arange(len(labels))
    note = ""
    if spec.max_train_rows is not None and len(labels) > spec.max_train_rows:
        rows = stratified_subsample(labels, spec.max_train_rows, settings.seed)
        note = f"stratified subsample {len(rows):,} of {len(labels):,} rows"
    model = spec.build()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(train.matrix[rows], labels[rows])
    seconds = time.perf_counter() - started

    if spec.uses_decision_function:

        def score(matrix: np.ndarray) -> np.ndarray:
            return np.asarray(model.decision_function(matrix), dtype=np.float64)
    else:

        def score(matrix: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict_proba(matrix)[:, 1], dtype=np.float64)

    return TrainedModel(spec.name, model, score, seconds, len(rows), dict(spec.params), note)


@dataclass
class ComparisonRow:
    """One model's row of the table plus what is needed to log it."""

    model: TrainedModel
    display_name: str
    metrics: dict[str, float]
    threshold: float | None
    extra: dict[str, Any] = field(default_factory=dict)


def evaluate_model(
    model: TrainedModel, test: RankingDataset, k: int, *, threshold: float | None = 0.5
) -> dict[str, float]:
    """Every table column for ``model`` on the test window (``threshold`` on its score for the labels).

    ``threshold=None`` (scores that are not probabilities, e.g. LambdaRank) leaves the
    threshold-based columns empty (NaN); ROC AUC and the ranking metrics need only the order.
    """
    from sklearn.metrics import confusion_matrix, roc_auc_score

    started = time.perf_counter()
    scores = model.score(test.matrix)
    inference_ms = 1000 * (time.perf_counter() - started) / max(len(test), 1)
    truth = test.labels
    predicted = (scores > (threshold if threshold is not None else 0.0)).astype(np.int64)
    tn, fp, fn, tp = (int(x) for x in confusion_matrix(truth, predicted, labels=[0, 1]).ravel())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    metrics = {
        "accuracy": (tp + tn) / max(len(truth), 1),
        "f1_score": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "false_negatives": fn,
        "false_positives": fp,
        "inference_time_ms": inference_ms,
        "precision": precision,
        "recall": recall,
        "roc_auc": float(roc_auc_score(truth, scores)) if 0 < truth.sum() < len(truth) else math.nan,
        "specificity": tn / (tn + fp) if tn + fp else 0.0,
        "training_time_seconds": model.training_seconds,
        "true_negatives": tn,
        "true_positives": tp,
    }
    if threshold is None:
        keep = {"inference_time_ms", "roc_auc", "training_time_seconds"}
        metrics = {name: (value if name in keep else math.nan) for name, value in metrics.items()}
    ranked = ranking_scores(scores, test, k)
    metrics.update(
        dict(zip(ranking_columns(k), (ranked.precision, ranked.hitrate, ranked.ndcg, ranked.map), strict=True))
    )
    return metrics


def display_name(model: TrainedModel) -> str:
    return f"{model.name} ({model.note})" if model.note else model.name


def compare_models(
    models: list[TrainedModel], test: RankingDataset, k: int, *, thresholds: dict[str, float | None] | None = None
) -> list[ComparisonRow]:
    """Evaluate already-trained models on the test window, in ``MODEL_ORDER`` (others after).

    ``thresholds`` maps a model name to its decision threshold (default 0.5; SVM 0.0; None = no
    threshold metrics).
    """
    thresholds = {"SVM": 0.0, **(thresholds or {})}
    order = {name: i for i, name in enumerate(MODEL_ORDER)}
    rows = []
    for model in sorted(models, key=lambda m: order.get(m.name, len(order))):
        threshold = thresholds.get(model.name, 0.5)
        metrics = evaluate_model(model, test, k, threshold=threshold)
        rows.append(ComparisonRow(model, display_name(model), metrics, threshold))
    return rows


def comparison_table(rows: list[ComparisonRow], k: int) -> pd.DataFrame:
    """One row per model (index ``model``), columns exactly as the issue: classification, then ranking."""
    columns = [*CLASSIFICATION_COLUMNS, *ranking_columns(k)]
    frame = pd.DataFrame([{c: row.metrics.get(c, math.nan) for c in columns} for row in rows], columns=columns)
    frame.index = pd.Index([row.display_name for row in rows], name="model")
    return frame


def write_table(table: pd.DataFrame, folder: Path, *, notes: list[str] | None = None) -> tuple[Path, Path]:
    """``model_comparison.csv`` and a Markdown version with notes under it."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = folder / "model_comparison.csv", folder / "model_comparison.md"
    table.to_csv(csv_path, float_format="%.6g")
    md_path.write_text(markdown_table(table) + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else ""))
    return csv_path, md_path


def comparison_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The table as JSON-ready rows ``{"model": name, <column>: value}``; NaN (not applicable) becomes None."""
    return [
        {"model": str(name), **{str(c): None if pd.isna(v) else float(v) for c, v in row.items()}}
        for name, row in table.iterrows()
    ]


def markdown_table(table: pd.DataFrame) -> str:
    """A plain GitHub-flavoured Markdown table (no extra dependency)."""
    header = [str(table.index.name or ""), *(str(c) for c in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in table.iterrows():
        cells = [str(name)] + [_format_cell(c, v) for c, v in row.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _format_cell(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if column in ("false_negatives", "false_positives", "true_negatives", "true_positives"):
        return f"{int(value):,}"
    if column == "training_time_seconds":
        return f"{value:.2f}"
    if column == "inference_time_ms":
        return f"{value:.4f}"
    return f"{value:.4f}"
