"""``recsys registry ...``: register, list, compare, validate, promote, rollback, server.

Imports only Typer at module level; MLflow, LightGBM and pandas load inside the commands.
Exit codes: 0 ok; 1 the gate failed / promotion refused; 2 a user mistake or an unreachable registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

registry_app = typer.Typer(
    help="MLflow model registry: register rankers, compare versions, validate (gate), promote, roll back.",
    no_args_is_help=True,
)

VERSION_HELP = "Version number, or an alias (challenger, champion, previous_champion)."


@contextmanager
def _registry_errors() -> Iterator[None]:
    """An unreachable registry is reported like a user error: one line, exit 2, no traceback."""
    from shared.errors import UserInputError
    from zadanie3.registry_client import RegistryUnavailable

    try:
        yield
    except RegistryUnavailable as exc:
        raise UserInputError(f"model registry unavailable: {exc}") from exc


def _settings(eval_set: Path | None = None):  # -> RegistrySettings (lazy import keeps the CLI fast)
    from zadanie3.settings import load_settings

    return load_settings(**({"eval_set_path": eval_set} if eval_set else {}))


def _read_json(path: Path) -> dict:
    from shared.errors import UserInputError

    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a JSON object")
    return data


def _parse_tags(pairs: list[str]) -> dict[str, str]:
    from shared.errors import UserInputError

    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"--tag expects KEY=VALUE, got '{pair}'")
        tags[key.strip()] = value
    return tags


@registry_app.command("register")
def register_command(
    ranker_dir: Path | None = typer.Option(
        None, help="Ranker folder (model.txt + ranker_meta.json); default artifacts/train/ranker."
    ),
    metrics_json: Path | None = typer.Option(
        None, help="Training metrics (JSON object; nested objects are flattened)."
    ),
    training_window_json: Path | None = typer.Option(
        None, help="Training window JSON; default <ranker-dir>/../training_window.json when it exists."
    ),
    eval_set: Path | None = typer.Option(None, help="Evaluation set parquet (first rows become the input example)."),
    reason: str = typer.Option("registered after training", help="Why; recorded on the version."),
    tag: list[str] = typer.Option([], help="Extra version tag KEY=VALUE (repeatable)."),
) -> None:
    """Register a ranker folder as a new version of the registered model and alias it `challenger`."""
    from shared.console import console, step
    from zadanie3 import registry_client as rc

    settings = _settings(eval_set)
    folder = ranker_dir or settings.effective_ranker_dir
    metrics = _read_json(metrics_json) if metrics_json else {}
    window_path = training_window_json or folder.parent / "training_window.json"
    window = _read_json(window_path) if (training_window_json or window_path.is_file()) else {}
    example_rows = None
    if settings.effective_eval_set_path.is_file():
        from zadanie3.evaluation_set import load_evaluation_set

        example_rows = load_evaluation_set(settings.effective_eval_set_path).features[:5]
    with _registry_errors(), step(f"register {folder} as a new version of '{settings.model_name}'"):
        registered = rc.register_ranker(
            folder,
            settings,
            metrics=metrics,
            tags=_parse_tags(tag),
            training_window=window,
            example_rows=example_rows,
            reason=reason,
        )
    console.print(
        f"registered {settings.model_name} v{registered.version} ({registered.model_uri}, run {registered.run_id}); "
        f"alias challenger -> v{registered.version}",
        soft_wrap=True,
    )


@registry_app.command("list")
def list_command() -> None:
    """Versions with aliases, gate status and key metrics (from the last validation, else training)."""
    from shared.console import console
    from zadanie3 import registry_client as rc
    from zadanie3.model_comparison_table import row_from_logged_metrics
    from zadanie3.settings import redact_uri

    settings = _settings()
    with _registry_errors():
        versions = rc.list_versions(settings)
    if not versions:
        console.print(f"model '{settings.model_name}' has no versions yet (run `recsys registry register`)")
        return
    k = settings.gate_ndcg_k
    console.print(
        f"{settings.model_name} @ {redact_uri(settings.effective_tracking_uri)}", markup=False, soft_wrap=True
    )
    header = f"{'version':>7}  {'aliases':<28} {'gate':<13} {'ROC-AUC':>7} {f'ndcg@{k}':>7} {'p99 ms':>7}  registered"
    console.print(header, markup=False, soft_wrap=True)
    for info in versions:
        row = row_from_logged_metrics(info, k)
        line = (
            f"{info.version:>7}  {', '.join(info.aliases) or '-':<28} {info.validation_status:<13} "
            f"{row.roc_auc:>7.4f} {row.ndcg_at_k:>7.4f} {row.p99_ms:>7.2f}  {info.created_at} "
            f"by {info.tags.get('registered_by', '-')}"
        )
        console.print(line, markup=False, soft_wrap=True)


@registry_app.command("compare")
def compare_command(
    versions: list[int] = typer.Argument(None, help="Versions to compare; default all."),
    eval_set: Path | None = typer.Option(
        None, help="Evaluation set parquet; default artifacts/train/eval_set.parquet."
    ),
    out: Path | None = typer.Option(None, help="Markdown output; default artifacts/registry/versions.md."),
) -> None:
    """Score versions on the same evaluation set and write the comparison table (markdown)."""
    from shared.console import console, step
    from zadanie3.model_comparison_table import build_comparison, render_markdown, write_comparison

    settings = _settings(eval_set)
    with _registry_errors(), step("compare versions"):
        rows, notes = build_comparison(settings, versions or ())
    markdown = render_markdown(rows, model_name=settings.model_name, k=settings.gate_ndcg_k, notes=notes)
    path = write_comparison(markdown, out or settings.registry_dir / "versions.md")
    console.print(markdown, markup=False, soft_wrap=True)
    console.print(f"wrote {path}", soft_wrap=True)


@registry_app.command("validate")
def validate_command(
    version: str = typer.Argument("challenger", help=VERSION_HELP),
    eval_set: Path | None = typer.Option(
        None, help="Evaluation set parquet; default artifacts/train/eval_set.parquet."
    ),
) -> None:
    """Run the validation gate on a version (vs the champion) and record the report; exit 1 when it fails."""
    from shared.console import console, step
    from zadanie3 import registry_client as rc
    from zadanie3.gate_runner import run_validation

    settings = _settings(eval_set)
    with _registry_errors():
        number = rc.resolve_version_ref(version, settings)
        with step(f"validate {settings.model_name} v{number}"):
            report, path = run_validation(number, settings)
    for line in report.summary_lines():
        console.print(line, markup=False, soft_wrap=True)
    console.print(f"report {report.report_id} saved to {path} and logged to the version's run", soft_wrap=True)
    if not report.passed:
        console.print(f"[red]gate failed[/]: {', '.join(report.failed_gates)}")
        raise typer.Exit(1)


@registry_app.command("promote")
def promote_command(
    version: str = typer.Argument(..., help=VERSION_HELP),
    force: bool = typer.Option(False, "--force", help="Promote even if the gate failed (needs --reason)."),
    reason: str | None = typer.Option(None, help="Why; recorded on the version (required with --force)."),
) -> None:
    """Move the `champion` alias to a version whose gate passed; the old champion becomes `previous_champion`."""
    from shared.console import console
    from zadanie3 import registry_client as rc

    settings = _settings()
    with _registry_errors():
        number = rc.resolve_version_ref(version, settings)
        try:
            move = rc.promote(number, settings, force=force, reason=reason)
        except rc.PromotionRefused as exc:
            console.print(f"[red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(1) from exc
    if not move.changed:
        console.print(f"v{move.current} is already the champion of {settings.model_name}")
        return
    before = f"v{move.previous}" if move.previous is not None else "none"
    forced = " (FORCED)" if move.forced else ""
    console.print(f"champion of {settings.model_name}: {before} -> v{move.current}{forced}")


@registry_app.command("rollback")
def rollback_command(
    reason: str = typer.Option("rollback", help="Why; recorded on both versions."),
) -> None:
    """Point `champion` back at the previous champion."""
    from shared.console import console
    from zadanie3 import registry_client as rc

    settings = _settings()
    with _registry_errors():
        move = rc.rollback(settings, reason=reason)
    console.print(f"champion of {settings.model_name}: v{move.previous} -> v{move.current} (rolled back)")


@registry_app.command("reference-auc")
def reference_auc_command(
    eval_set: Path | None = typer.Option(
        None, help="Evaluation set parquet; default artifacts/train/eval_set.parquet."
    ),
    ground_truth: Path | None = typer.Option(
        None, help="Ground truth of the generated shop; default data/ground_truth (RECSYS_DATA_DIR)."
    ),
) -> None:
    """ROC-AUC of the generator's true utilities on the evaluation set: the bar attainable on synthetic data."""
    from shared.console import console
    from shared.settings import load_shared_settings
    from zadanie3.reference_auc import load_reference_aucs, write_reference_aucs

    settings = _settings(eval_set)
    truth_dir = ground_truth or load_shared_settings().ground_truth_dir
    result = load_reference_aucs(settings.effective_eval_set_path, truth_dir)
    console.print(
        f"{result.rows:,} rows, {result.positives:,} positives; ROC-AUC of ground-truth scores: "
        f"true utility {result.true_utility:.4f}, utility + log(activity) {result.utility_plus_log_activity:.4f} "
        f"(gate bar: {settings.gate_min_roc_auc})",
        soft_wrap=True,
    )
    console.print(f"wrote {write_reference_aucs(result, settings.registry_dir / 'reference_auc.json')}")


@registry_app.command("server")
def server_command(
    backend_store_uri: str | None = typer.Option(
        None, help="Default RECSYS_REGISTRY_SERVER_BACKEND_STORE_URI (PostgreSQL)."
    ),
    artifacts_destination: Path | None = typer.Option(None, help="Artifact folder the server proxies."),
    host: str | None = typer.Option(None, help="Bind address; default 127.0.0.1."),
    port: int | None = typer.Option(None, help="Port; default 5000."),
    create_db: bool = typer.Option(True, help="Create the PostgreSQL database when it does not exist."),
    dry_run: bool = typer.Option(False, help="Print the command instead of starting the server."),
) -> None:
    """Run `mlflow server` for production: PostgreSQL backend, proxied artifacts, 1 worker, no job runners."""
    import os
    import shlex

    from shared.console import console
    from zadanie3.mlflow_server import (
        ensure_postgres_database,
        mlflow_server_command,
        mlflow_server_env,
    )
    from zadanie3.settings import load_settings, redact_uri

    overrides = {
        "server_backend_store_uri": backend_store_uri,
        "server_artifacts_destination": artifacts_destination,
        "server_host": host,
        "server_port": port,
    }
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    command = mlflow_server_command(settings)
    backend = redact_uri(settings.server_backend_store_uri)
    if dry_run:
        console.print(f"MLFLOW_BACKEND_STORE_URI={backend} {shlex.join(command)}", markup=False, soft_wrap=True)
        return
    if create_db:
        ensure_postgres_database(settings.server_backend_store_uri)
    settings.effective_server_artifacts_destination.mkdir(parents=True, exist_ok=True)
    console.print(
        f"mlflow server on http://{settings.server_host}:{settings.server_port} (backend {backend}; Ctrl+C stops it)",
        soft_wrap=True,
    )
    os.execvpe(command[0], command, mlflow_server_env(settings, dict(os.environ)))


def register(app: typer.Typer) -> None:
    """Mount ``recsys registry`` on the root app."""
    app.add_typer(registry_app, name="registry")
