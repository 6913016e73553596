"""``recsys features ...``: build offline snapshots, apply the Feast repo, materialize, check, measure.

Imports nothing heavy at module level (Feast costs seconds); each command imports what it needs.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer

features_app = typer.Typer(
    help="Feast feature store: offline snapshots -> registry -> online store (SQLite, or Redis via REDIS_URL).",
    no_args_is_help=True,
)


def _quiet_library_warnings() -> None:
    """Library deprecation chatter (pandas/ibis/duckdb) is not for the user of this command."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _settings(events: Path | None = None):  # type: ignore[no-untyped-def]
    from zadanie2.settings import load_settings

    return load_settings(**({"events_path": events} if events else {}))


def _store_line(settings) -> str:  # type: ignore[no-untyped-def]
    where = settings.paths()["sqlite"] if settings.online_store_kind == "sqlite" else "REDIS_URL"
    return f"online store: {settings.online_store_kind} ({where})"


@features_app.command("build")
def build_command(
    events: Path | None = typer.Option(None, help="Events file; default data/events.parquet (RECSYS_DATA_DIR)."),
    freq: str | None = typer.Option(None, help="Snapshot spacing (pandas offset, e.g. 1D, 12h); default 1D."),
    force: bool = typer.Option(False, help="Rewrite every snapshot even if its events did not change."),
) -> None:
    """Write offline Parquet snapshots (shared feature functions at each cutoff, event_timestamp = cutoff)."""
    from shared.console import console, step, track
    from zadanie2.offline_snapshots import build_snapshots, load_offline_events

    settings = _settings(events)
    paths = settings.paths()
    with step(f"load events from {paths['events']} (+ real-time log {paths['realtime_event_log']})"):
        frame = load_offline_events(paths["events"], paths["realtime_event_log"])
    with step(f"build snapshots every {freq or settings.snapshot_freq} into {paths['offline']}"):
        report = build_snapshots(
            frame,
            paths["offline"],
            freq=freq or settings.snapshot_freq,
            force=force,
            progress=lambda cutoffs: track(cutoffs, "snapshots", total=len(cutoffs)),
        )
    console.print(
        f"{len(report.cutoffs)} snapshots ({len(report.written)} written, {len(report.skipped)} unchanged, "
        f"{len(report.removed)} stale files removed) from {report.n_events:,} events; data end {report.data_end}"
    )
    console.print("final snapshot rows: " + ", ".join(f"{k} {v:,}" for k, v in report.rows.items()))


@features_app.command("apply")
def apply_command() -> None:
    """Generate feature_store.yaml from the settings and register the repo (entities, views, ranker_v1)."""
    _quiet_library_warnings()
    from shared.console import console, step
    from zadanie2.feature_store_config import write_feature_store_yaml

    settings = _settings()
    with step("import feast"):
        from zadanie2.feature_store_config import open_feature_store
        from zadanie2.materialization import apply_feature_repo

        store = open_feature_store(settings)
    with step(f"feast apply ({_store_line(settings)})"):
        names = apply_feature_repo(settings, store)
    console.print(f"applied {len(names)} objects: {', '.join(names)}")
    console.print(f"yaml: {write_feature_store_yaml(settings)}  registry: {settings.paths()['registry']}")


@features_app.command("materialize")
def materialize_command(
    incremental: bool = typer.Option(False, "--incremental", help="Continue from each view's last materialization."),
) -> None:
    """Load the newest snapshot values up to the data end into the online store."""
    _quiet_library_warnings()
    from shared.console import console, step
    from zadanie2.materialization import materialize_views, report_path

    settings = _settings()
    with step(f"materialize ({'incremental' if incremental else 'full'}; {_store_line(settings)})"):
        report = materialize_views(settings, incremental=incremental)
    for view, seconds in report.seconds_per_view.items():
        console.print(f"  {view}: {report.rows_in_final_snapshot.get(view, 0):,} entities, {seconds:.1f} s")
    console.print(
        f"materialized {report.start} .. {report.end} in {report.seconds_total:.1f} s -> {report_path(settings)}"
    )


@features_app.command("check")
def check_command(
    sample: int = typer.Option(1000, min=1, help="Entities sampled per feature view (users, products, pairs, ...)."),
    seed: int = typer.Option(0, help="Sampling seed."),
) -> None:
    """Compare offline (point-in-time), online SDK and service read path values; exit 1 on any mismatch."""
    _quiet_library_warnings()
    from shared.console import console, step
    from zadanie2.consistency_check import check_feature_store

    settings = _settings()
    with step(f"consistency check, {sample} entities per view ({_store_line(settings)})"):
        result = check_feature_store(settings, sample=sample, seed=seed)
    console.print(json.dumps(result.as_dict()))
    for example in result.examples:
        console.print(f"  [red]mismatch[/] {example}", soft_wrap=True)
    console.print(f"wrote {settings.paths()['features'] / 'consistency.json'}")
    if result.mismatches:
        _explain_mismatches(settings)
        raise typer.Exit(1)


def _explain_mismatches(settings) -> None:  # type: ignore[no-untyped-def]
    """Name the usual cause: snapshots rebuilt (e.g. after pushed events) but not materialized yet."""
    from shared.console import console
    from zadanie2.feature_store_config import open_feature_store
    from zadanie2.materialization import materialized_until
    from zadanie2.offline_snapshots import snapshot_window

    built_until = snapshot_window(settings.paths()["offline"])[1]
    online_until = materialized_until(open_feature_store(settings))
    if built_until != online_until:
        console.print(
            f"[yellow]hint:[/] offline snapshots end at {built_until} but the online store was materialized "
            f"until {online_until}: run `recsys features materialize --incremental`"
        )
    else:
        console.print(
            "[yellow]hint:[/] events pushed after the last build change online rows until the next "
            "`recsys features build` + `materialize --incremental`; otherwise the store has drifted"
        )


@features_app.command("latency")
def latency_command(
    calls: int = typer.Option(300, min=10, help="Timed calls per case (after 20 warm-up calls)."),
    products: int = typer.Option(200, min=1, help="Products per multi-entity read."),
) -> None:
    """Time online reads (Feast SDK vs service read path) and write artifacts/features/latency.json."""
    _quiet_library_warnings()
    from shared.console import console, step
    from zadanie2.latency_benchmark import run_latency_benchmark, write_latency

    settings = _settings()
    with step(f"latency, {calls} calls per case ({_store_line(settings)})"):
        section = run_latency_benchmark(settings, calls=calls, n_products=products)
    for path_name in ("sdk", "service_path"):
        for case, stats in section[path_name].items():
            console.print(
                f"  {path_name:12s} {case:8s} p50 {stats['p50_ms']:.3f} ms  p99 {stats['p99_ms']:.3f} ms "
                f"(n={stats['calls']})"
            )
    if "redis_memory" in section:
        memory = section["redis_memory"]
        console.print(f"  redis: {memory['keys']:,} keys, {memory['keys_mib']} MiB")
    console.print(f"wrote {write_latency(settings, section)}")


@features_app.command("push")
def push_command(
    events: Path = typer.Argument(
        ..., help="New events (CSV/Parquet, event schema) that arrived after materialization."
    ),
) -> None:
    """Apply late events to their users' online features (as of the newest event) and log them offline."""
    _quiet_library_warnings()
    from shared.console import console, step
    from shared.event_loader import load_events
    from zadanie2.realtime_updates import RealtimeFeatureUpdater

    settings = _settings()
    frame = load_events(events).events
    with step(f"push {len(frame):,} events ({_store_line(settings)})"):
        report = RealtimeFeatureUpdater(settings).apply(frame)
    console.print(
        f"updated {len(report.users):,} users ({report.pair_rows:,} pair rows) as of {report.as_of}; "
        f"logged to {report.log_file}"
    )


@features_app.command("refresh")
def refresh_command(
    events: Path | None = typer.Option(None, help="Events file; default data/events.parquet (RECSYS_DATA_DIR)."),
    sample: int = typer.Option(1000, min=1, help="Entities per feature view for the consistency check."),
) -> None:
    """build + apply + materialize + check in one process (Feast is imported once; used by `make demo`)."""
    build_command(events=events, freq=None, force=False)
    apply_command()
    materialize_command(incremental=False)
    check_command(sample=sample, seed=0)


def register(app: typer.Typer) -> None:
    """Mount ``recsys features ...`` on the root app."""
    app.add_typer(features_app, name="features")
