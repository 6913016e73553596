"""The ``recsys`` command line: the composition root that mounts every part's commands.

Each part exposes ``register(app)`` in its own ``cli`` module; heavy libraries (Feast, MLflow,
LightGBM) are imported inside the command bodies so ``recsys --help`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import typer

from shared.console import console, step
from shared.errors import UserInputError

PART_CLI_MODULES = ("zadanie1.cli", "zadanie2.cli", "zadanie3.cli", "zadanie4.cli", "zadanie4.evaluation.cli")
"""Mounted when installed: the service image ships without zadanie4.evaluation (the measuring tools)."""

data_app = typer.Typer(help="Event data: generate the synthetic shop, validate a file.", no_args_is_help=True)


@data_app.command("generate")
def generate_command(
    users: int = typer.Option(3000, min=10, help="Users active in the period."),
    products: int = typer.Option(1500, min=10, help="Products in the catalogue."),
    days: int = typer.Option(28, min=1, help="Length of the period in days."),
    seed: int = typer.Option(42, help="Random seed; equal seeds give equal files."),
    sessions_per_day: float = typer.Option(
        0.25, min=0.001, help="Mean sessions per user per active day (~9 events a session): sets events per user."
    ),
    out: Path | None = typer.Option(None, help="Events file (.parquet, .csv, .csv.gz); default data/events.parquet."),
    ground_truth: Path | None = typer.Option(
        None, help="Ground-truth folder; default 'ground_truth' beside the events file (data/ground_truth)."
    ),
    mode: str = typer.Option(
        "shop",
        help="shop: the default generator (tastes, brands, prices; with its ground-truth click model for the A/B "
        "simulator); latent: latent-factor tastes, 2-20 views per user, no ground truth (shared/latent_shop.py).",
    ),
) -> None:
    """Generate a synthetic event log (and, in shop mode, its ground-truth click model)."""
    from shared.data_generator import GeneratorConfig, generate, is_generated_file, mark_generated_file, write_events
    from shared.settings import load_shared_settings

    if mode not in ("shop", "latent"):
        raise UserInputError(f"--mode must be shop or latent, got {mode!r}")

    settings = load_shared_settings()
    out = out or settings.default_events_path
    if out.exists() and not is_generated_file(out):
        raise UserInputError(
            f"{out} exists and was not written by `recsys data generate`: refusing to overwrite it. "
            "For your own events use `recsys run --events PATH`; to generate, choose another --out."
        )
    if mode == "latent":
        _generate_latent_shop(out, users=users, products=products, days=days, seed=seed)
        return
    # Beside the events file, so generating another shop elsewhere never replaces the demo's ground truth.
    ground_truth = ground_truth or out.parent / settings.ground_truth_dir.name
    try:
        config = GeneratorConfig(
            n_users=users, n_products=products, days=days, seed=seed, sessions_per_user_day=sessions_per_day
        )
    except ValueError as exc:  # sizes that the catalogue's shape cannot hold: the user's option, not a bug
        raise UserInputError(str(exc)) from exc
    with step(f"generate {users:,} users x {products:,} products x {days} days (seed {seed})"):
        data = generate(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_events(data.events, out)
    shape = {"users": users, "products": products, "days": days, "seed": seed, "sessions_per_day": sessions_per_day}
    mark_generated_file(out, shape)
    data.ground_truth.save(ground_truth)
    console.print(f"wrote {len(data.events):,} events to {out} and the ground truth to {ground_truth}")


def _generate_latent_shop(out: Path, *, users: int, products: int, days: int, seed: int) -> None:
    from shared.data_generator import mark_generated_file, write_events
    from shared.latent_shop import LatentShopConfig, generate_latent_shop

    try:
        config = LatentShopConfig(n_users=users, n_products=products, days=days, seed=seed)
    except ValueError as exc:
        raise UserInputError(str(exc)) from exc
    with step(f"generate a latent-factor shop: {users:,} users x {products:,} products x {days} days (seed {seed})"):
        events = generate_latent_shop(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_events(events, out)
    mark_generated_file(out, {"mode": "latent", "users": users, "products": products, "days": days, "seed": seed})
    console.print(f"wrote {len(events):,} events to {out} (latent-factor shop: no ground-truth click model)")


@data_app.command("validate")
def validate_command(
    path: str = typer.Argument(..., help="Events: a CSV, CSV.gz or Parquet file, a directory or a glob."),
    drop_unknown_event_types: bool = typer.Option(False, help="Drop rows with unknown event types (counted)."),
    copy_to: Path | None = typer.Option(None, help="Also write the validated events to this new Parquet file."),
) -> None:
    """Check events against the schema and print the validation summary (optionally keep a validated copy)."""
    from shared.event_loader import load_event_files, summary_counts, write_validated_events

    loaded = load_event_files(path, drop_unknown_event_types=drop_unknown_event_types)
    for line in loaded.summary.lines():
        console.print(line)
    if copy_to is not None:
        if loaded.events.empty:
            raise UserInputError(f"{path}: no events left after validation")
        write_validated_events(loaded, copy_to)
        console.print(f"wrote the validated copy to {copy_to}")
    for name, value in summary_counts(loaded.events).items():
        console.print(f"{name}: {value:,}")
    if len(loaded.events):
        times = loaded.events["event_time"]
        console.print(f"period: {times.min()} .. {times.max()}")


@data_app.command("features")
def features_summary_command(
    events: Path | None = typer.Option(None, help="Events file; default data/events.parquet."),
    cutoff: str | None = typer.Option(None, help="As-of time (ISO); default: just after the last event."),
) -> None:
    """Compute every feature view as of a cutoff and print a summary (rows, defaults, ranges)."""
    import pandas as pd

    from shared.event_loader import load_events
    from shared.feature_computation import compute_feature_tables
    from shared.settings import load_shared_settings

    path = events or load_shared_settings().default_events_path
    loaded = load_events(path)
    if loaded.events.empty:
        raise UserInputError(f"{path}: no events left after validation")
    as_of = pd.Timestamp(cutoff) if cutoff else loaded.events["event_time"].max() + pd.Timedelta(seconds=1)
    with step(f"compute feature views as of {as_of}"):
        tables = compute_feature_tables(loaded.events, as_of)
    for name in ("user_stats", "product_stats", "category_stats", "user_product_interactions"):
        table = getattr(tables, name)
        numeric = table.select_dtypes("number")
        console.print(f"{name}: {len(table):,} rows x {table.shape[1]} features")
        for column in list(numeric.columns)[:4]:
            values = numeric[column]
            console.print(f"  {column}: mean {values.mean():.3f}, min {values.min():.3f}, max {values.max():.3f}")


def run_command(
    events: str = typer.Option(..., help="Your event log: a CSV, CSV.gz or Parquet file, a directory or a glob."),
    out: Path | None = typer.Option(None, help="Output folder; default runs/<name of the events>."),
    drop_unknown_event_types: bool = typer.Option(False, help="Drop rows with unknown event types (counted)."),
) -> None:
    """Run the whole pipeline on your own events: validate, EDA, features, train, evaluate, register, gate,
    promote. Your files are only read; everything goes under --out."""
    from shared.pipeline_run import run_pipeline

    name = Path(events.rstrip("/")).name.split(".")[0].strip("*?[]") or "events"
    run_pipeline(events, out or Path("runs") / name, drop_unknown_event_types=drop_unknown_event_types)


def _installed(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def build_app() -> typer.Typer:
    """The root ``recsys`` app with the data commands and every installed part's commands."""
    app = typer.Typer(
        name="recsys",
        help="Personalized e-commerce recommendations: data, EDA, training, features, registry, serving.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.add_typer(data_app, name="data")
    app.command("run")(run_command)
    for module_name in PART_CLI_MODULES:
        if _installed(module_name):
            importlib.import_module(module_name).register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes print one line and exit 2; no tracebacks for them.

    Usage errors (bad option, missing argument) are reported by Typer itself, also with exit 2.
    """
    app = build_app()
    try:
        app(args=argv, prog_name="recsys")
    except UserInputError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
