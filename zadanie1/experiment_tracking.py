"""MLflow logging of the model comparison: one parent run per ``recsys train`` and one child run per model.

The tracking URI defaults to ``sqlite:///artifacts/mlflow/mlflow.db`` with artifacts under
``artifacts/mlflow/artifacts`` (``MLFLOW_TRACKING_URI`` overrides). ``mlflow`` is imported here,
inside functions only, because importing it costs seconds. Models are logged as files (the
ranker folder: LightGBM text + feature list); registering them is zadanie3's job.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zadanie1.model_comparison import ComparisonRow


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

    The final model's child run carries the tag ``final_model=true`` and the ranker folder as
    artifacts under ``ranker/``. Returns ``{"experiment_id", "parent_run_id", "<model>": run id}``.
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
                if is_final and ranker_folder.is_dir():
                    mlflow.log_artifacts(str(ranker_folder), artifact_path="ranker")
    return ids
