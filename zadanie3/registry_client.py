"""Everything that talks to the MLflow registry: register, aliases, promote/rollback, and loading for serving.

One registered model (``settings.model_name``) holds every trained ranker as a version. The logged
model is MLflow's LightGBM flavor of the Booster (native text ``model.lgb``, loadable with
``mlflow.lightgbm.load_model``) plus, as ``extra_files/``, the ranker folder exactly as training wrote
it (``model.txt`` + ``ranker_meta.json``). Serving loads only that folder with
``zadanie1.ranker_artifact.load_ranker`` — LightGBM's text format, never pickle.

Aliases, not stages: ``challenger`` (newest registered), ``champion`` (serving), ``previous_champion``.
The order of champions is kept in the registered model's ``champion_history`` tag so ``rollback`` can
step back more than once. Every action is written on the version as tags: an ``event.<UTC time>``
JSON record (action, who, when, why, report id) plus ``<action>_by|_at|_reason``.

``import mlflow`` happens inside the functions (it costs seconds).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from shared.errors import UserInputError
from shared.feature_definitions import RANKER_FEATURES, default_of
from zadanie1.ranker_artifact import META_FILE, MODEL_FILE, RankerArtifact, load_ranker
from zadanie3.settings import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, RegistrySettings, load_settings, redact_uri
from zadanie3.validation_gate import describe_non_default_thresholds, promotion_decision

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

LOGGED_MODEL_NAME = "ranker"
RANKER_SUBDIR = "extra_files"  # where log_model(extra_files=...) puts the ranker folder inside the model
CHAMPION_HISTORY_TAG = "champion_history"
VALIDATION_STATUS_TAG = "validation.status"
VALIDATION_REPORT_TAG = "validation.report_id"
VALIDATION_CHAMPION_TAG = "validation.champion_version"
VALIDATION_THRESHOLDS_TAG = "validation.non_default_thresholds"
NO_CHAMPION = "none"
CACHE_POINTER_DIR = "aliases"
CACHE_VERSIONS_DIR = "versions"
CACHE_INFO_FILE = "version_info.json"
MAX_REASON_CHARS = 500
MAX_HISTORY = 50


class RegistryUnavailable(RuntimeError):
    """The registry (database, server or artifact store) could not be reached."""


class ModelNotFound(UserInputError):
    """The registry answered, but the alias or version does not exist."""


class PromotionRefused(Exception):
    """Promotion was refused by the validation gate (the CLI exits 1 with this message)."""


@dataclass(frozen=True)
class RegisteredVersion:
    version: int
    run_id: str
    model_uri: str  # models:/<name>/<version>


@dataclass(frozen=True)
class VersionInfo:
    """One version as shown by ``recsys registry list``."""

    version: int
    aliases: tuple[str, ...]
    created_at: str
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def validation_status(self) -> str:
        return self.tags.get(VALIDATION_STATUS_TAG, "not_validated")


@dataclass(frozen=True)
class AliasMove:
    """Result of promote/rollback: which version the champion alias left and which it now names."""

    previous: int | None
    current: int
    forced: bool = False
    changed: bool = True


# ---------------------------------------------------------------- connection


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def current_actor(settings: RegistrySettings) -> str:
    """Who is recorded on actions: ``RECSYS_REGISTRY_ACTOR`` or the OS user."""
    if settings.actor:
        return settings.actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def probe_registry(settings: RegistrySettings, *, require_existing_db: bool = False) -> None:
    """Fail fast (``RegistryUnavailable``) when the registry cannot answer.

    MLflow itself retries a dead database for ~100 s and a dead server per its HTTP settings;
    a TCP connect with ``connect_timeout_s`` tells within seconds. With ``require_existing_db``
    a missing SQLite file counts as unavailable instead of silently creating an empty registry.
    """
    uri = settings.effective_tracking_uri
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+", 1)[0].lower()
    if scheme == "sqlite":
        path = Path(uri.split(":///", 1)[1]) if ":///" in uri else None
        if require_existing_db and path is not None and not path.is_file():
            raise RegistryUnavailable(f"registry database {path} does not exist")
        return
    default_ports = {"postgresql": 5432, "mysql": 3306, "mssql": 1433, "http": 80, "https": 443}
    if scheme not in default_ports or not parsed.hostname:
        return
    port = parsed.port or default_ports[scheme]
    try:
        with socket.create_connection((parsed.hostname, port), timeout=settings.connect_timeout_s):
            pass
    except OSError as exc:
        raise RegistryUnavailable(f"registry {parsed.hostname}:{port} unreachable ({exc})") from exc


def connect(settings: RegistrySettings, *, require_existing_db: bool = False) -> MlflowClient:
    """Point MLflow (fluent API and a client) at the registry; fails fast when it is unreachable."""
    # Quiet, bounded MLflow: no telemetry, no progress bars, few HTTP retries (users may override).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.http_max_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.http_timeout_s))
    probe_registry(settings, require_existing_db=require_existing_db)
    import mlflow
    from mlflow import MlflowClient

    uri = settings.effective_tracking_uri
    if settings.uses_local_store and uri.startswith("sqlite:///"):
        Path(uri.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    except Exception as exc:  # sqlalchemy/requests errors: the store is there but does not answer
        raise RegistryUnavailable(f"registry {uri} unavailable ({_first_line(exc)})") from exc


def ensure_experiment(client: MlflowClient, settings: RegistrySettings) -> str:
    """The experiment registration runs go to; with a local store its artifacts live in our folder, not ./mlruns."""
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    location = None
    if settings.uses_local_store:
        root = settings.effective_artifact_root
        root.mkdir(parents=True, exist_ok=True)
        location = root.as_uri()
    return str(client.create_experiment(settings.experiment_name, artifact_location=location))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _is_not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc))


# ---------------------------------------------------------------- register


def metric_key(name: str) -> str:
    """MLflow metric keys allow [A-Za-z0-9_-. /]; ``ndcg@10`` becomes ``ndcg_at_10``."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name.replace("@", "_at_"))


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a (nested) metrics mapping as ``a.b`` keys; non-numbers and NaN/inf are dropped."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float | np.integer | np.floating) and np.isfinite(value):
            flat[metric_key(name)] = float(value)
    return flat


def ranker_signature(feature_names: Sequence[str]) -> Any:
    """MLflow signature: one float32 column per feature in model order -> one float64 score."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    inputs = Schema([ColSpec(DataType.float, name) for name in feature_names])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(DataType.double, "score")]))


def input_example_frame(feature_names: Sequence[str], rows: np.ndarray | None = None) -> Any:
    """A few float32 rows (the given ones, else each feature's registry default) as a DataFrame."""
    import pandas as pd

    if rows is None or len(rows) == 0:
        rows = np.array([[default_of(name) for name in feature_names]], dtype=np.float32)
    return pd.DataFrame(np.asarray(rows[:5], dtype=np.float32), columns=list(feature_names))


def pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc flavor (explicit: inference takes 6-8 s per log_model)."""
    import lightgbm
    import pandas

    return [f"lightgbm=={lightgbm.__version__}", f"numpy=={np.__version__}", f"pandas=={pandas.__version__}"]


def _ranker_facts(artifact: RankerArtifact) -> dict[str, str]:
    booster = artifact.booster
    return {
        "objective": str(getattr(booster, "params", {}).get("objective", "unknown")),
        "num_trees": str(booster.num_trees()),
        "n_features": str(len(artifact.feature_names)),
    }


def register_ranker(
    ranker_dir: Path,
    settings: RegistrySettings,
    *,
    metrics: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    training_window: Mapping[str, Any] | None = None,
    example_rows: np.ndarray | None = None,
    reason: str = "registered after training",
) -> RegisteredVersion:
    """Log the ranker folder as a new version of ``settings.model_name`` and point ``challenger`` at it.

    The version carries the signature, an input example, the ordered feature list, the Feast
    FeatureService name and the training window (tags; also run params), and the run carries
    the training metrics (``metrics``, else ``test_metrics``/``valid_metrics`` of ``ranker_meta.json``).
    Raises ``UserInputError`` when the folder is not a valid ranker.
    """
    artifact = load_ranker(ranker_dir, expected_features=RANKER_FEATURES)
    import mlflow

    client = connect(settings)
    experiment_id = ensure_experiment(client, settings)
    facts = _ranker_facts(artifact)
    window = {str(k): str(v) for k, v in (training_window or {}).items()}
    feature_json = json.dumps(list(artifact.feature_names))
    params = {
        "feature_service": settings.feature_service_name,
        "ranker_dir": str(ranker_dir),
        **facts,
        **{f"training.{k}": v for k, v in window.items()},
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"register-{settings.model_name}") as run:
        mlflow.log_params(params)
        logged = flatten_metrics(metrics) if metrics else _metrics_from_meta(artifact.meta)
        if logged:
            mlflow.log_metrics(logged)
        mlflow.set_tags({"feature_names": feature_json, "registered_model": settings.model_name, **(tags or {})})
        info = mlflow.lightgbm.log_model(
            artifact.booster,
            name=LOGGED_MODEL_NAME,
            signature=ranker_signature(artifact.feature_names),
            input_example=input_example_frame(artifact.feature_names, example_rows),
            pip_requirements=pip_requirements(),
            extra_files=[str((ranker_dir / MODEL_FILE).resolve()), str((ranker_dir / META_FILE).resolve())],
            metadata={"feature_names": list(artifact.feature_names), "feature_service": settings.feature_service_name},
        )
    _ensure_registered_model(client, settings)
    version_tags = {
        "feature_names": feature_json,
        "feature_service": settings.feature_service_name,
        **{f"ranker.{k}": v for k, v in facts.items()},
        **{f"training.{k}": v for k, v in window.items()},
        VALIDATION_STATUS_TAG: "not_validated",
        **(tags or {}),
    }
    model_version = client.create_model_version(
        settings.model_name,
        source=info.model_uri,
        run_id=run.info.run_id,
        tags=version_tags,
        description=f"LightGBM ranker, {facts['num_trees']} trees, FeatureService {settings.feature_service_name}",
        await_creation_for=0,
        model_id=info.model_id,
    )
    version = int(model_version.version)
    record_event(client, settings, version, "registered", reason)
    set_alias(CHALLENGER, version, settings, reason="newly registered version", client=client)
    return RegisteredVersion(
        version=version, run_id=run.info.run_id, model_uri=f"models:/{settings.model_name}/{version}"
    )


def _metrics_from_meta(meta: Mapping[str, Any]) -> dict[str, float]:
    """Training's figures from ``ranker_meta.json`` (``test_metrics``, ``valid_metrics``) when none are given."""
    return flatten_metrics(
        {key: meta[key] for key in ("test_metrics", "valid_metrics") if isinstance(meta.get(key), Mapping)}
    )


def _ensure_registered_model(client: MlflowClient, settings: RegistrySettings) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            settings.model_name,
            tags={"feature_service": settings.feature_service_name},
            description="Personalized e-commerce ranker (LightGBM). Aliases: champion, challenger, previous_champion.",
        )
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


# ---------------------------------------------------------------- tags and aliases


def record_event(
    client: MlflowClient,
    settings: RegistrySettings,
    version: int,
    action: str,
    reason: str | None,
    **details: Any,
) -> dict[str, Any]:
    """Record an action on the version: an ``event.<UTC time>`` JSON tag and ``<action>_by|_at|_reason`` tags.

    Event keys sort by time (microseconds), so no read is needed before writing.
    """
    now = dt.datetime.now(dt.UTC)
    event = {
        "action": action,
        "by": current_actor(settings),
        "at": now.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "reason": (reason or "")[:MAX_REASON_CHARS],
        **{k: v for k, v in details.items() if v is not None},
    }
    name, v = settings.model_name, str(version)
    key = f"event.{now.strftime('%Y%m%dT%H%M%S.%f')}"
    client.set_model_version_tag(name, v, key, json.dumps(event, sort_keys=True, default=str))
    client.set_model_version_tag(name, v, f"{action}_by", event["by"])
    client.set_model_version_tag(name, v, f"{action}_at", event["at"])
    client.set_model_version_tag(name, v, f"{action}_reason", event["reason"])
    return event


def version_events(tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The ``event.<time>`` records of a version, oldest first."""
    keys = sorted(k for k in tags if k.startswith("event."))
    return [json.loads(tags[k]) for k in keys]


def set_alias(
    alias: str,
    version: int,
    settings: RegistrySettings,
    *,
    reason: str,
    client: MlflowClient | None = None,
) -> None:
    """Point ``alias`` at ``version`` and record it on the version."""
    client = client or connect(settings)
    client.set_registered_model_alias(settings.model_name, alias, str(version))
    record_event(client, settings, version, f"alias_{alias}", reason, alias=alias)


def _aliases(client: MlflowClient, settings: RegistrySettings) -> dict[str, int]:
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(settings.model_name)
    except MlflowException as exc:
        if _is_not_found(exc):
            return {}
        raise
    return {alias: int(v) for alias, v in model.aliases.items()}


def resolve_alias(alias: str, settings: RegistrySettings | None = None) -> int | None:
    """The version an alias names, or None when the model or alias does not exist.

    Raises ``RegistryUnavailable`` when the registry cannot be asked (the caller may use its cache).
    """
    target = _resolve_alias_target(alias, settings or load_settings())
    return target[0] if target is not None else None


def _resolve_alias_target(alias: str, settings: RegistrySettings) -> tuple[int, str | None] | None:
    """(version, run id) of ``alias`` with a fresh client; registry failures become ``RegistryUnavailable``."""
    client = connect(settings, require_existing_db=True)
    try:
        return _resolve_target(client, settings, alias)
    except RegistryUnavailable:
        raise
    except Exception as exc:
        raise RegistryUnavailable(f"registry {settings.effective_tracking_uri} failed: {_first_line(exc)}") from exc


def _resolve(client: MlflowClient, settings: RegistrySettings, alias: str) -> int | None:
    target = _resolve_target(client, settings, alias)
    return target[0] if target is not None else None


def _resolve_target(client: MlflowClient, settings: RegistrySettings, alias: str) -> tuple[int, str | None] | None:
    """(version, run id) the alias names, or None; one registry query."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version_by_alias(settings.model_name, alias)
    except MlflowException as exc:
        if _is_not_found(exc):
            return None
        raise
    return int(found.version), found.run_id


def resolve_version_ref(ref: str, settings: RegistrySettings, client: MlflowClient | None = None) -> int:
    """A CLI version argument: a number, or an alias name (``challenger``, ``champion``...)."""
    if ref.isdigit():
        return int(ref)
    client = client or connect(settings)
    version = _resolve(client, settings, ref)
    if version is None:
        raise ModelNotFound(f"alias '{ref}' of model '{settings.model_name}' is not set")
    return version


def get_version(version: int, settings: RegistrySettings, client: MlflowClient | None = None) -> VersionInfo:
    from mlflow.exceptions import MlflowException

    client = client or connect(settings)
    try:
        mv = client.get_model_version(settings.model_name, str(version))
    except MlflowException as exc:
        if _is_not_found(exc):
            raise ModelNotFound(f"version {version} of model '{settings.model_name}' does not exist") from exc
        raise
    aliases = _aliases(client, settings)
    return _version_info(client, mv, aliases)


def _version_info(client: MlflowClient, mv: Any, aliases: Mapping[str, int]) -> VersionInfo:
    metrics: dict[str, float] = {}
    if mv.run_id:
        try:
            metrics = dict(client.get_run(mv.run_id).data.metrics)
        except Exception:  # a deleted run must not break listing
            metrics = {}
    created = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC).replace(microsecond=0)
    return VersionInfo(
        version=int(mv.version),
        aliases=tuple(sorted(a for a, v in aliases.items() if v == int(mv.version))),
        created_at=created.isoformat().replace("+00:00", "Z"),
        run_id=mv.run_id,
        tags=dict(mv.tags),
        metrics=metrics,
    )


def list_versions(settings: RegistrySettings) -> list[VersionInfo]:
    """Every version of the model, newest first, with aliases, tags and run metrics."""
    client = connect(settings)
    aliases = _aliases(client, settings)
    versions = client.search_model_versions(f"name='{settings.model_name}'")
    return sorted((_version_info(client, mv, aliases) for mv in versions), key=lambda v: -v.version)


# ---------------------------------------------------------------- promote / rollback


def _champion_history(client: MlflowClient, settings: RegistrySettings) -> list[int]:
    tags = client.get_registered_model(settings.model_name).tags
    try:
        return [int(v) for v in json.loads(tags.get(CHAMPION_HISTORY_TAG, "[]"))]
    except (ValueError, TypeError):
        return []


def _save_history(client: MlflowClient, settings: RegistrySettings, history: list[int]) -> None:
    client.set_registered_model_tag(settings.model_name, CHAMPION_HISTORY_TAG, json.dumps(history[-MAX_HISTORY:]))


def promote(version: int, settings: RegistrySettings, *, force: bool = False, reason: str | None = None) -> AliasMove:
    """Move ``champion`` to ``version`` if its validation passed against the current champion.

    Refusals raise ``PromotionRefused`` (gate failed, not validated, validated against another
    champion); ``force`` overrides them but needs a ``reason``, and both are recorded.
    """
    client = connect(settings)
    info = get_version(version, settings, client)
    current = _resolve(client, settings, CHAMPION)
    decision = promotion_decision(
        version=version,
        validation_status=info.tags.get(VALIDATION_STATUS_TAG, "not_validated"),
        validated_against=info.tags.get(VALIDATION_CHAMPION_TAG),
        current_champion=current,
        force=force,
        reason=reason,
        report_id=info.tags.get(VALIDATION_REPORT_TAG),
    )
    if decision.user_error:
        raise UserInputError(decision.message)
    if not decision.allowed:
        raise PromotionRefused(decision.message)
    if current == version:
        return AliasMove(previous=current, current=version, forced=force, changed=False)
    history = _champion_history(client, settings)
    if current is not None and (not history or history[-1] != current):
        history.append(current)  # champion set by hand outside this tool: keep it restorable
    client.set_registered_model_alias(settings.model_name, CHAMPION, str(version))
    if current is not None:
        client.set_registered_model_alias(settings.model_name, PREVIOUS_CHAMPION, str(current))
        record_event(client, settings, current, "demoted", f"replaced by v{version}", replaced_by=version)
    _save_history(client, settings, [*history, version])
    if _resolve(client, settings, CHALLENGER) == version:
        client.delete_registered_model_alias(settings.model_name, CHALLENGER)
    relaxed = info.tags.get(VALIDATION_THRESHOLDS_TAG, "-")  # a gate passed under a relaxed bar says so here too
    record_event(
        client,
        settings,
        version,
        "promoted",
        reason or decision.message,
        forced=force or None,
        previous_champion=current,
        report_id=info.tags.get(VALIDATION_REPORT_TAG),
        non_default_thresholds=None if relaxed == "-" else relaxed,
    )
    client.set_model_version_tag(settings.model_name, str(version), "promotion_forced", str(bool(force)).lower())
    return AliasMove(previous=current, current=version, forced=force)


def rollback(settings: RegistrySettings, *, reason: str = "rollback") -> AliasMove:
    """Point ``champion`` back at the version before it (from ``champion_history``)."""
    client = connect(settings)
    current = _resolve(client, settings, CHAMPION)
    if current is None:
        raise UserInputError(f"model '{settings.model_name}' has no champion to roll back")
    history = _champion_history(client, settings)
    while history and history[-1] == current:
        history.pop()
    target = history[-1] if history else _resolve(client, settings, PREVIOUS_CHAMPION)
    if target is None or target == current:
        raise UserInputError(f"no previous champion of '{settings.model_name}' to roll back to")
    client.set_registered_model_alias(settings.model_name, CHAMPION, str(target))
    _save_history(client, settings, history)
    before = [v for v in history[:-1] if v != target]
    if before:
        client.set_registered_model_alias(settings.model_name, PREVIOUS_CHAMPION, str(before[-1]))
    else:
        try:
            client.delete_registered_model_alias(settings.model_name, PREVIOUS_CHAMPION)
        except Exception as exc:  # alias was not set
            log.debug("no previous_champion alias to delete: %s", exc)
    record_event(client, settings, current, "rolled_back", reason, restored=target)
    record_event(client, settings, target, "restored", reason, replaced=current)
    return AliasMove(previous=current, current=target)


# ---------------------------------------------------------------- validation records


def record_validation(version: int, report: Mapping[str, Any], report_path: Path, settings: RegistrySettings) -> None:
    """Attach a gate report to the version: tags (status, report id, champion compared), run artifact and metrics."""
    from mlflow.entities import Metric

    client = connect(settings)
    name, v = settings.model_name, str(version)
    mv = client.get_model_version(name, v)
    status = "passed" if report["passed"] else "failed"
    champion = report.get("champion_version")
    client.set_model_version_tag(name, v, VALIDATION_STATUS_TAG, status)
    client.set_model_version_tag(name, v, VALIDATION_REPORT_TAG, str(report["report_id"]))
    client.set_model_version_tag(name, v, VALIDATION_CHAMPION_TAG, NO_CHAMPION if champion is None else str(champion))
    client.set_model_version_tag(name, v, "validation.failed_gates", ",".join(report.get("failed_gates", [])) or "-")
    relaxed = describe_non_default_thresholds(report.get("non_default_thresholds") or {})
    client.set_model_version_tag(name, v, VALIDATION_THRESHOLDS_TAG, relaxed)
    record_event(
        client,
        settings,
        version,
        "validated",
        f"gate {status}",
        report_id=report["report_id"],
        champion_version=champion,
        failed_gates=report.get("failed_gates") or None,
        non_default_thresholds=None if relaxed == "-" else relaxed,
    )
    if mv.run_id:
        client.log_artifact(mv.run_id, str(report_path), artifact_path="validation")
        stamp = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        figures = flatten_metrics(report.get("figures", {}), "validation.")
        figures["validation.passed"] = 1.0 if report["passed"] else 0.0
        client.log_batch(mv.run_id, metrics=[Metric(k, val, stamp, 0) for k, val in figures.items()])


# ---------------------------------------------------------------- loading for serving (with last-good cache)


def _cache_root(settings: RegistrySettings, cache_dir: Path | None) -> Path:
    return (cache_dir or settings.cache_dir) / re.sub(r"[^A-Za-z0-9_.-]", "_", settings.model_name)


def _cached_version_dir(root: Path, version: int) -> Path | None:
    folder = root / CACHE_VERSIONS_DIR / str(version)
    complete = all((folder / f).is_file() for f in (MODEL_FILE, META_FILE, CACHE_INFO_FILE))
    return folder if complete else None


def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _cached_run_id(folder: Path) -> str | None:
    try:
        return json.loads((folder / CACHE_INFO_FILE).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def download_ranker(
    version: int, settings: RegistrySettings, *, cache_dir: Path | None = None, run_id: str | None = None
) -> Path:
    """The ranker folder of ``version`` in the local cache (downloaded once; versions are immutable).

    With ``run_id`` a cached copy is reused only if it came from that run, so a recreated registry
    whose version numbers restart cannot hand out another model from the cache.
    """
    root = _cache_root(settings, cache_dir)
    cached = _cached_version_dir(root, version)
    if cached is not None and (run_id is None or _cached_run_id(cached) == run_id):
        return cached
    import mlflow

    connect(settings)
    (root / CACHE_VERSIONS_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root / CACHE_VERSIONS_DIR, prefix=".download-") as tmp:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{settings.model_name}/{version}", dst_path=tmp
                )
            )
        except Exception as exc:
            if _is_not_found(exc):
                raise ModelNotFound(f"version {version} of model '{settings.model_name}' does not exist") from exc
            raise RegistryUnavailable(
                f"download of {settings.model_name} v{version} failed: {_first_line(exc)}"
            ) from exc
        source = local / RANKER_SUBDIR
        if not (source / MODEL_FILE).is_file():
            raise UserInputError(
                f"{settings.model_name} v{version} has no ranker folder ({RANKER_SUBDIR}/{MODEL_FILE})"
            )
        staged = Path(tmp) / "ranker"
        staged.mkdir()
        for name in (MODEL_FILE, META_FILE):
            shutil.copy2(source / name, staged / name)
        info = {"model_name": settings.model_name, "version": version, "run_id": run_id, "downloaded_at": now_iso()}
        (staged / CACHE_INFO_FILE).write_text(
            json.dumps({**info, "tracking_uri": redact_uri(settings.effective_tracking_uri)}, indent=2)
        )
        final = root / CACHE_VERSIONS_DIR / str(version)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staged, final)
    return final


def load_ranker_version(version: int, settings: RegistrySettings, *, cache_dir: Path | None = None) -> RankerArtifact:
    """Load one version's ranker (LightGBM text via ``load_ranker``), downloading it into the cache if needed."""
    from mlflow.exceptions import MlflowException

    client = connect(settings, require_existing_db=True)
    try:
        run_id = client.get_model_version(settings.model_name, str(version)).run_id
    except MlflowException as exc:
        if _is_not_found(exc):
            raise ModelNotFound(f"version {version} of model '{settings.model_name}' does not exist") from exc
        raise RegistryUnavailable(f"registry {settings.effective_tracking_uri} failed: {_first_line(exc)}") from exc
    except Exception as exc:  # database/network errors surface as sqlalchemy/requests exceptions
        raise RegistryUnavailable(f"registry {settings.effective_tracking_uri} failed: {_first_line(exc)}") from exc
    folder = download_ranker(version, settings, cache_dir=cache_dir, run_id=run_id)
    artifact = load_ranker(folder, expected_features=RANKER_FEATURES)
    artifact.meta.update({"registry_model": settings.model_name, "registry_version": version})
    return artifact


@dataclass(frozen=True)
class FetchedRanker:
    """Where an alias's ranker files are on local disk, after asking the registry (or its last-good cache)."""

    alias: str
    version: int
    run_id: str | None
    folder: Path
    loaded_from: str  # "registry" | "cache"


def fetch_ranker_by_alias(
    alias: str, settings: RegistrySettings | None = None, *, cache_dir: Path | None = None
) -> FetchedRanker:
    """Resolve ``alias`` and make sure its files are in the local cache, without parsing the model.

    This is the part of loading that talks to the registry (Python-heavy MLflow calls): the service
    runs it in a helper process and only parses the files itself. On success the alias -> version
    pointer is saved in the cache as the last good answer; when the registry is unreachable
    (``RegistryUnavailable``) the last good version of that alias is used instead, so an outage does
    not stop startup. Raises ``ModelNotFound`` when the registry says the alias is not set,
    ``RegistryUnavailable`` when it cannot be reached and nothing is cached.
    """
    settings = settings or load_settings()
    root = _cache_root(settings, cache_dir)
    pointer = root / CACHE_POINTER_DIR / f"{alias}.json"
    try:
        target = _resolve_alias_target(alias, settings)
        if target is None:
            raise ModelNotFound(f"alias '{alias}' of model '{settings.model_name}' is not set")
        version, run_id = target
        folder = download_ranker(version, settings, cache_dir=cache_dir, run_id=run_id)
    except RegistryUnavailable as exc:
        version, folder = _cached_alias(root, pointer, alias, exc)
        return FetchedRanker(alias, version, None, folder, "cache")
    _write_json_atomic(pointer, {"alias": alias, "version": version, "resolved_at": now_iso()})
    return FetchedRanker(alias, version, run_id, folder, "registry")


def load_fetched_ranker(fetched: FetchedRanker, settings: RegistrySettings | None = None) -> RankerArtifact:
    """Parse the files of :func:`fetch_ranker_by_alias`; ``meta`` gets the registry facts."""
    settings = settings or load_settings()
    artifact = load_ranker(fetched.folder, expected_features=RANKER_FEATURES)
    artifact.meta.update(
        {
            "registry_model": settings.model_name,
            "registry_version": fetched.version,
            "registry_run_id": fetched.run_id,
            "registry_alias": fetched.alias,
            "loaded_from": fetched.loaded_from,
        }
    )
    return artifact


def load_ranker_by_alias(
    alias: str, settings: RegistrySettings | None = None, *, cache_dir: Path | None = None
) -> tuple[int, RankerArtifact]:
    """Resolve ``alias`` (e.g. ``champion``) and load that ranker (:func:`fetch_ranker_by_alias` + parse).

    ``artifact.meta`` gets ``registry_version``, ``registry_run_id``, ``registry_alias`` and
    ``loaded_from`` ("registry" | "cache").
    """
    settings = settings or load_settings()
    fetched = fetch_ranker_by_alias(alias, settings, cache_dir=cache_dir)
    return fetched.version, load_fetched_ranker(fetched, settings)


def _cached_alias(root: Path, pointer: Path, alias: str, cause: Exception) -> tuple[int, Path]:
    """(version, folder) of the alias's last good answer in the cache; RegistryUnavailable when there is none."""
    try:
        version = int(json.loads(pointer.read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        raise RegistryUnavailable(f"{cause}; and no cached '{alias}' model in {root}") from cause
    folder = _cached_version_dir(root, version)
    if folder is None:
        raise RegistryUnavailable(f"{cause}; and the cached '{alias}' v{version} in {root} is incomplete") from cause
    log.warning("registry unavailable (%s); serving cached '%s' v%d from %s", cause, alias, version, folder)
    return version, folder
