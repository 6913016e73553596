"""MLflow logging of the model comparison: one parent run per ``recsys train`` and one child run per model.

The tracking URI defaults to ``sqlite:///artifacts/mlflow/mlflow.db`` with artifacts under
``artifacts/mlflow/artifacts`` (``MLFLOW_TRACKING_URI`` overrides). ``mlflow`` is imported here,
inside functions only, because importing it costs seconds. Models are logged as files (the
ranker folder: LightGBM text + feature list); registering them is zadanie3's job.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zadanie1.model_comparison import ComparisonRow
from zadanie1.ranker_training import TrainedModel


def _mlflow(tracking_uri: str) -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow


def ensure_experiment(mlflow: Any, name: str, tracking_uri: str, artifacts_dir: Path) -> str:
    """The experiment id; a new one on a local sqlite store keeps its artifacts under ``artifacts_dir``."""
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = None
    if tracking_uri.startswith("sqlite:///"):
        root = (artifacts_dir / "mlflow" / "artifacts").resolve()
        root.mkdir(parents=True, exist_ok=True)
        location = root.as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location))


def _finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """MLflow metric names cannot hold '@'; NaN (not applicable) values are left out."""
    out = {}
    for name, value in metrics.items():
        if value is None or not math.isfinite(float(value)):
            continue
        out[name.replace("@", "_at_")] = float(value)
    return out


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v)[:500] for k, v in params.items()}


def native_model_files(model: TrainedModel, folder: Path) -> list[Path]:
    """Save ``model`` in its library's own non-pickle format, when it has one; returns the files written.

    LightGBM -> ``model.txt`` (text), XGBoost -> ``model.json``, CatBoost -> ``model.cbm``. The
    scikit-learn models (GradientBoosting, SVM, RandomForest, LogisticRegression) only pickle, so they
    get none; their run still holds params, metrics and ``model_summary.json``.
    """
    estimator = model.estimator
    if estimator is None:
        return []
    booster = getattr(estimator, "booster_", None)
    if booster is not None and hasattr(booster, "save_model"):  # LightGBM sklearn API
        path = folder / "model.txt"
        booster.save_model(str(path))
        return [path]
    if hasattr(estimator, "get_booster"):  # XGBoost sklearn API
        path = folder / "model.json"
        estimator.get_booster().save_model(str(path))
        return [path]
    if type(estimator).__module__.startswith("catboost"):
        path = folder / "model.cbm"
        estimator.save_model(str(path))
        return [path]
    return []


def model_summary(row: ComparisonRow) -> dict[str, Any]:
    """The model's table row (NaN -> null), params, training rows and subsample note, for its run's artifacts."""
    return {
        "model": row.display_name,
        "metrics": {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.metrics.items()},
        "params": {k: str(v) for k, v in row.model.params.items()},
        "n_train_rows": row.model.n_train_rows,
        "subsample": row.model.note or None,
        "decision_threshold": row.threshold,
    }


def log_training_runs(
    *,
    tracking_uri: str,
    experiment_name: str,
    artifacts_dir: Path,
    rows: list[ComparisonRow],
    final_name: str,
    ranker_folder: Path,
    run_params: Mapping[str, Any],
    run_metrics: Mapping[str, float],
    artifact_files: list[Path],
) -> dict[str, str]:
    """Log the parent run (settings, timings, tables, reports) and one child run per model.

    Every child run holds ``model/model_summary.json`` (its table row, params, subsample) and, where the
    library has a non-pickle format, ``model/model.txt|json|cbm``. The final model's child run carries
    the tag ``final_model=true`` and the ranker folder as artifacts under ``ranker/``.
    Returns ``{"experiment_id", "parent_run_id", "<model>": run id}``.
    """
    mlflow = _mlflow(tracking_uri)
    experiment_id = ensure_experiment(mlflow, experiment_name, tracking_uri, artifacts_dir)
    ids: dict[str, str] = {"experiment_id": experiment_id}
    with mlflow.start_run(experiment_id=experiment_id, run_name="recsys-train") as parent:
        ids["parent_run_id"] = parent.info.run_id
        mlflow.set_tags({"component": "zadanie1", "final_model": final_name})
        mlflow.log_params(_params(run_params))
        mlflow.log_metrics(_finite_metrics(run_metrics))
        for path in artifact_files:
            if path.is_file():
                mlflow.log_artifact(str(path))
        for row in rows:
            model = row.model
            with mlflow.start_run(experiment_id=experiment_id, run_name=row.display_name, nested=True) as child:
                ids[model.name] = child.info.run_id
                is_final = model.name == final_name
                mlflow.set_tags(
                    {
                        "model_name": model.name,
                        "final_model": str(is_final).lower(),
                        "subsample": model.note or "none",
                    }
                )
                mlflow.log_params(
                    _params(
                        {
                            **model.params,
                            "n_train_rows": model.n_train_rows,
                            "decision_threshold": row.threshold,
                        }
                    )
                )
                mlflow.log_metrics(_finite_metrics(row.metrics))
                with tempfile.TemporaryDirectory() as tmp:
                    folder = Path(tmp)
                    (folder / "model_summary.json").write_text(json.dumps(model_summary(row), indent=2))
                    files = native_model_files(model, folder)
                    if files:
                        model_file = files[0].name
                    else:
                        model_file = "none (scikit-learn: pickle only)" if model.estimator is not None else "none"
                    mlflow.set_tag("model_file", model_file)
                    mlflow.log_artifacts(str(folder), artifact_path="model")
                if is_final and ranker_folder.is_dir():
                    mlflow.log_artifacts(str(ranker_folder), artifact_path="ranker")
    return ids
