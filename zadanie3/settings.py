"""Settings of the model registry part (env prefix ``RECSYS_REGISTRY_``), built by :func:`load_settings`.

Where MLflow lives, what the registered model is called, and the validation gate's thresholds.
``MLFLOW_TRACKING_URI`` is honoured when ``RECSYS_REGISTRY_TRACKING_URI`` is not set; with neither,
the registry is an SQLite file under the artifacts folder with artifacts in a local folder beside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import load_shared_settings

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"

LOCAL_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # stores MLflow talks to directly (no server)


def redact_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for messages and files)."""
    password = urlparse(uri).password
    return uri.replace(f":{password}@", ":***@") if password else uri


def _env_tracking_uri() -> str | None:
    return os.environ.get("MLFLOW_TRACKING_URI") or None


def _shared_artifacts_dir() -> Path:
    return load_shared_settings().artifacts_dir


class RegistrySettings(BaseSettings):
    """Registry location, model identity, gate thresholds and the production server's options."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_REGISTRY_", extra="ignore")

    # where things live
    artifacts_dir: Path = Field(default_factory=_shared_artifacts_dir)
    tracking_uri: str | None = Field(default_factory=_env_tracking_uri)
    artifact_root: Path | None = (
        None  # local artifact folder for sqlite/postgres stores; default artifacts/mlflow/artifacts
    )
    eval_set_path: Path | None = None  # default artifacts/train/eval_set.parquet
    ranker_dir: Path | None = None  # default artifacts/train/ranker

    # identity of what is registered
    model_name: str = "recsys-ranker"
    experiment_name: str = "recsys-ranker"
    feature_service_name: str = "ranker_v1"
    actor: str | None = None  # who is recorded on actions; default: the OS user

    # talking to a remote registry: fail fast so a service can fall back to its cache
    connect_timeout_s: float = Field(default=3.0, gt=0)
    http_max_retries: int = Field(default=1, ge=0)
    http_timeout_s: int = Field(default=10, ge=1)

    # validation gate thresholds (see zadanie3/README.md)
    gate_min_roc_auc: float = Field(default=0.85, ge=0, le=1)
    gate_ndcg_k: int = Field(default=10, ge=1)
    gate_max_ndcg_drop: float = Field(default=0.01, ge=0)  # vs champion, absolute ndcg@k
    gate_latency_candidates: int = Field(default=500, ge=1)
    gate_latency_calls: int = Field(default=200, ge=1)
    gate_min_latency_calls: int = Field(default=200, ge=1)
    gate_max_p99_latency_ms: float = Field(default=50.0, gt=0)
    gate_time_slices: int = Field(default=4, ge=2)
    gate_max_time_slice_auc_spread: float = Field(default=0.05, ge=0)
    gate_bootstrap_resamples: int = Field(default=200, ge=10)
    gate_max_bootstrap_auc_std: float = Field(default=0.02, ge=0)
    gate_ab_margin: float = Field(default=0.02, ge=0)  # non-inferiority margin of the champion comparison
    gate_max_abs_score: float = Field(default=1e6, gt=0)
    gate_seed: int = 20240601

    # production tracking server (`recsys registry server`)
    server_host: str = "127.0.0.1"
    server_port: int = Field(default=5000, ge=1, le=65535)
    server_backend_store_uri: str = "postgresql://postgres@127.0.0.1:5432/mlflow"
    server_artifacts_destination: Path | None = None  # default artifacts/mlflow/server-artifacts
    server_allowed_hosts: str = "localhost,127.0.0.1,localhost:*,127.0.0.1:*"
    server_workers: int = Field(default=1, ge=1)

    @property
    def effective_tracking_uri(self) -> str:
        """The tracking/registry URI in use: explicit setting, ``MLFLOW_TRACKING_URI``, or the local SQLite file."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.artifacts_dir / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def uses_local_store(self) -> bool:
        """True when MLflow talks to a database directly (then we choose the artifact folder, not a server)."""
        scheme = self.effective_tracking_uri.split(":", 1)[0].split("+", 1)[0].lower()
        return scheme in LOCAL_DB_SCHEMES

    @property
    def effective_artifact_root(self) -> Path:
        return (self.artifact_root or self.artifacts_dir / "mlflow" / "artifacts").resolve()

    @property
    def registry_dir(self) -> Path:
        """Reports, the comparison table and the model cache live here."""
        return self.artifacts_dir / "registry"

    @property
    def cache_dir(self) -> Path:
        """Last-good copies of registered rankers, so a registry outage does not stop serving."""
        return self.registry_dir / "cache"

    @property
    def effective_eval_set_path(self) -> Path:
        return self.eval_set_path or self.artifacts_dir / "train" / "eval_set.parquet"

    @property
    def effective_ranker_dir(self) -> Path:
        return self.ranker_dir or self.artifacts_dir / "train" / "ranker"

    @property
    def effective_server_artifacts_destination(self) -> Path:
        return (self.server_artifacts_destination or self.artifacts_dir / "mlflow" / "server-artifacts").resolve()


def load_settings(**overrides: object) -> RegistrySettings:
    """Build the settings from the environment; keyword overrides win (used by tests and the CLI)."""
    return RegistrySettings(**overrides)  # type: ignore[arg-type]
