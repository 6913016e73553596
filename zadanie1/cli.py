"""zadanie1 commands: ``recsys eda``, ``recsys train``, ``recsys evaluate``.

Imports of pandas / LightGBM / MLflow / Feast happen inside the command bodies so ``recsys --help``
stays fast. User mistakes raise ``UserInputError`` (one line, exit 2 via ``shared.cli.main``).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    import pandas as pd

    from zadanie1.ranking_dataset import FeatureLookup


class FeatureSource(StrEnum):
    direct = "direct"
    feast = "feast"


def _events(path: Path | None) -> pd.DataFrame:
    from shared.console import console, step
    from shared.errors import UserInputError
    from shared.event_loader import load_events
    from shared.settings import load_shared_settings

    path = path or load_shared_settings().default_events_path
    with step(f"load {path}"):
        loaded = load_events(path)
    if loaded.events.empty:
        raise UserInputError(f"{path}: no events left after validation")
    dropped = sum(loaded.summary.dropped.values())
    console.print(f"  {len(loaded.events):,} events" + (f" ({dropped:,} rows dropped)" if dropped else ""))
    return loaded.events


def _artifacts_dir() -> Path:
    from shared.settings import load_shared_settings

    return load_shared_settings().artifacts_dir


def feature_lookup_for(source: FeatureSource) -> FeatureLookup | None:
    """None = the shared feature functions (direct); ``feast`` = zadanie2's point-in-time lookup."""
    if source is FeatureSource.direct:
        return None
    from shared.errors import UserInputError

    try:
        from zadanie2.training_features import feast_feature_lookup
    except ImportError as exc:
        raise UserInputError(
            "--feature-source feast needs zadanie2.training_features.feast_feature_lookup "
            f"(not available: {exc}); use --feature-source direct"
        ) from exc
    return feast_feature_lookup()


def eda_command(
    events: Path | None = typer.Option(None, help="Events file (CSV, CSV.gz, Parquet); default data/events.parquet."),
    out: Path | None = typer.Option(None, help="Output folder; default artifacts/eda."),
) -> None:
    """Exploratory analysis: PNG plots and report.md with the numbers."""
    from shared.console import console, step
    from zadanie1.eda import run_eda

    frame = _events(events)
    out = out or _artifacts_dir() / "eda"
    with step("EDA plots and report"):
        result = run_eda(frame, out)
    console.print(f"wrote {len(result.plots)} plots and {result.report_path}")


def train_command(
    events: Path | None = typer.Option(None, help="Events file; default data/events.parquet."),
    out: Path | None = typer.Option(None, help="Output folder; default artifacts/train."),
    feature_source: FeatureSource = typer.Option(
        FeatureSource.direct, help="direct = shared feature functions; feast = Feast point-in-time (zadanie2)."
    ),
    label_days: int | None = typer.Option(None, min=1, help="Days per label window (default 5)."),
    n_candidates: int | None = typer.Option(None, min=10, help="Candidates per user (default 150)."),
    max_train_users: int | None = typer.Option(None, min=10, help="Users sampled into the training set."),
    lightgbm_only: bool = typer.Option(False, help="Train only the two LightGBM variants (skip the comparison)."),
    mlflow: bool = typer.Option(True, help="Log one MLflow run per model."),
) -> None:
    """Train the candidate index and ranker; compare seven classifiers; log to MLflow."""
    from shared.console import console
    from zadanie1.settings import load_settings
    from zadanie1.training_pipeline import run_training

    settings = load_settings(label_days=label_days, n_candidates=n_candidates, max_train_users=max_train_users)
    lookup = feature_lookup_for(feature_source)
    frame = _events(events)
    artifacts_dir = _artifacts_dir()
    out = out or artifacts_dir / "train"
    outcome = run_training(
        frame,
        out,
        settings,
        artifacts_dir=artifacts_dir,
        feature_lookup=lookup,
        feature_source=feature_source.value,
        log_to_mlflow=mlflow,
        skip_slow_models=lightgbm_only,
    )
    console.print(summary_table(outcome.table, settings.k))
    console.print(f"final model: {outcome.choice_reason}")
    console.print(
        f"wrote {out}/ (ranker/, candidates/, model_comparison.csv/.md, report.md) in "
        f"{outcome.timings['total_seconds']:.0f} s"
    )


def summary_table(table: pd.DataFrame, k: int) -> Any:
    """The comparison's key columns as a rich table for the terminal (the files hold every column)."""
    from rich.table import Table

    columns = {
        "roc_auc": "AUC",
        f"precision@{k}": f"P@{k}",
        f"ndcg@{k}": f"NDCG@{k}",
        f"map@{k}": f"MAP@{k}",
        "training_time_seconds": "train s",
        "inference_time_ms": "ms/row",
    }
    view = Table(title="model comparison (test window)")
    view.add_column("model", no_wrap=True)
    for header in columns.values():
        view.add_column(header, justify="right")
    for model, row in table.iterrows():
        name = str(model).split(" (")[0]
        view.add_row(name, *(_cell(row[c]) for c in columns))
    return view


def _cell(value: float) -> str:
    return "n/a" if value != value else f"{value:.4f}"


def evaluate_command(
    events: Path | None = typer.Option(None, help="Events file; default data/events.parquet."),
    out: Path | None = typer.Option(None, help="Output folder for offline_eval.json; default artifacts/evaluate."),
    holdout_fraction: float | None = typer.Option(None, help="Hold out the last fraction of events (0..1)."),
    holdout_days: float | None = typer.Option(None, help="Hold out the last N days (default 7)."),
    k: int = typer.Option(10, min=1, help="List length."),
    label_days: int | None = typer.Option(None, min=1, help="Days per label window when training (default 5)."),
    serve_candidates: int | None = typer.Option(
        None, min=10, help="Candidates scored per user when recommending (default: as trained, 150; the service: 500)."
    ),
    max_per_category: int | None = typer.Option(
        None, min=0, help="Diversity cap per category in a list, 0 = off (default 5; the service: 3)."
    ),
) -> None:
    """Train before a holdout, recommend with the serving core, compare with popularity and random."""
    from shared.console import console, track
    from shared.errors import UserInputError
    from shared.run_stamp import run_stamp
    from zadanie1.offline_evaluation import evaluate_offline, render_evaluation_report
    from zadanie1.settings import load_settings

    if holdout_fraction is not None and holdout_days is not None:
        raise UserInputError("give only one of --holdout-fraction or --holdout-days")
    if holdout_fraction is None and holdout_days is None:
        holdout_days = 7.0
    settings = load_settings(
        label_days=label_days, k=k, serve_n_candidates=serve_candidates, max_per_category=max_per_category
    )
    frame = _events(events)
    out = out or _artifacts_dir() / "evaluate"
    result = evaluate_offline(
        frame,
        settings=settings,
        holdout_fraction=holdout_fraction,
        holdout_days=holdout_days,
        k=k,
        track=lambda items, title: track(items, title, total=len(items)),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "offline_eval.json").write_text(json.dumps(result.payload, indent=2))
    # offline_eval.json keeps its fixed keys; the stamp (commit, time) goes beside it, where make report reads it.
    details = {**result.details, "run": run_stamp()}
    (out / "evaluation_details.json").write_text(json.dumps(details, indent=2, default=str))
    (out / "report.md").write_text(render_evaluation_report(result))
    payload = result.payload
    for segment, entry in payload["segments"].items():
        parts = ", ".join(f"{m} {entry[m][f'precision_at_{k}']:.4f}" for m in ("model", "popularity", "random"))
        console.print(f"{segment:<11} ({entry['n_users']:,} users) precision@{k}: {parts}")
    lift = payload[f"lift_precision_at_{k}_vs_popularity"]
    console.print(f"lift precision@{k} vs popularity: {lift:+.1%}")
    console.print(
        f"wrote {out / 'offline_eval.json'}, evaluation_details.json and report.md in "
        f"{result.details['timings']['total_seconds']:.0f} s"
    )


def register(app: typer.Typer) -> None:
    """Mount ``eda``, ``train`` and ``evaluate`` on the root ``recsys`` app."""
    app.command("eda")(eda_command)
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
