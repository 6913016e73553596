"""``make loadtest``: locust, headless, against a running service (or one it starts), summarised to JSON.

    python -m zadanie4.evaluation.bench.loadtest_runner [--host http://127.0.0.1:8000] [--users 50] [--spawn-rate 10]
                                             [--run-time 60s] [--out artifacts/load_test_results]

Without ``--host`` it starts ``recsys serve`` itself on a free 127.0.0.1 port with the project's
default settings (SQLite online store, or Redis when ``REDIS_URL`` is set), after making sure the
data, the trained model and the materialized online store exist. That service keeps the load test's
feedback to itself (its own SQLite log / Redis stream, real-time feature updates off), so the synthetic
clicks never reach the user's event log. With two or more cores it runs on core 0 and locust on core 1.

Writes into ``--out``: ``test_summary.json`` (requests, failures, rps, p50/p95/p99/max per request
type and overall), locust's ``locust_stats.csv``, ``locust_stats_history.csv``, ``locust_failures.csv``,
``locust_exceptions.csv``, ``locust_report.html``, and ``ids.json`` (the ids the visitors used).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.errors import UserInputError
from shared.run_stamp import run_stamp

CSV_PREFIX = "locust"
AGGREGATED = "Aggregated"


def parse_run_time(text: str) -> float:
    """Locust's ``-t`` syntax (``90``, ``60s``, ``2m``, ``1h30m``) -> seconds. ValueError when malformed."""
    text = text.strip()
    if text.isdigit():
        return float(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or not parts or not any(parts.groups()):
        raise ValueError(f"run time {text!r}: use e.g. 60s, 2m, 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in parts.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def _number(value: str | None) -> float | None:
    if value is None or value.strip() in ("", "N/A"):
        return None
    return float(value)


def request_type_summary(row: Mapping[str, str]) -> dict[str, Any]:
    """One row of locust's ``*_stats.csv`` -> requests, failures, rps, p50/p95/p99/max (ms)."""
    requests = int(float(row["Request Count"]))
    failures = int(float(row["Failure Count"]))
    return {
        "method": row.get("Type") or None,
        "requests": requests,
        "failures": failures,
        "failure_ratio": round(failures / requests, 4) if requests else 0.0,
        "rps": round(_number(row["Requests/s"]) or 0.0, 2),
        "p50_ms": _number(row["50%"]),
        "p95_ms": _number(row["95%"]),
        "p99_ms": _number(row["99%"]),
        "max_ms": _number(row["Max Response Time"]),
        "avg_ms": round(_number(row["Average Response Time"]) or 0.0, 2),
    }


def summary_from_locust_rows(rows: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """``test_summary.json``'s numbers from the rows of locust's ``*_stats.csv`` (per type + overall).

    Raises ValueError when the aggregated row is missing (locust did not finish writing its stats).
    """
    per_type = {}
    overall = None
    for row in rows:
        if row["Name"] == AGGREGATED:
            overall = request_type_summary(row)
        else:
            per_type[row["Name"]] = request_type_summary(row)
    if overall is None:
        raise ValueError("locust stats have no 'Aggregated' row")
    overall.pop("method")
    return {
        "requests": overall["requests"],
        "failures": overall["failures"],
        "rps": overall["rps"],
        "overall": overall,
        "per_request_type": per_type,
    }


def read_stats_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# --- running -----------------------------------------------------------------------------------------


def locustfile_path() -> Path:
    return Path(__file__).resolve().parent / "locustfile.py"


def prepare_own_service_env(out_dir: Path) -> dict[str, str]:
    """The user's environment plus a service that keeps the load test's feedback apart."""
    from zadanie4.evaluation.bench import serving_setup as setup

    return setup.env_with(
        {
            "RECSYS_SERVE_REALTIME_UPDATES": "false",
            "RECSYS_SERVE_FEEDBACK_SQLITE_PATH": str((out_dir / "feedback.db").resolve()),
            "RECSYS_SERVE_FEEDBACK_STREAM": "recsys:loadtest:feedback",
        }
    )


def ensure_served_artifacts(env: Mapping[str, str], log_path: Path) -> None:
    """Data, trained model and a materialized online store of the default settings (made when missing)."""
    from shared.settings import load_shared_settings
    from zadanie2.materialization import report_path
    from zadanie2.settings import load_settings as load_feature_settings
    from zadanie4.evaluation.bench import serving_setup as setup

    shared = load_shared_settings()
    setup.ensure_events(shared.default_events_path, env, log_path)
    setup.ensure_trained(shared.default_events_path, shared.artifacts_dir / "train", env, log_path)
    feature_settings = load_feature_settings()
    if not report_path(feature_settings).exists():
        setup.materialize_store(
            env, log_path, f"build + apply + materialize the {feature_settings.online_store_kind} online store"
        )


def run_locust(
    host: str, out_dir: Path, *, users: int, spawn_rate: float, run_time: str, ids_path: Path, cores: str | None
) -> int:
    """locust headless with CSV + HTML reports into ``out_dir``; its exit code (1 = some requests failed)."""
    from zadanie4.evaluation.bench import serving_setup as setup

    command = [
        setup.executable("locust"),
        "-f", str(locustfile_path()),
        "--headless",
        "-u", str(users),
        "-r", str(spawn_rate),
        "-t", run_time,
        "--host", host,
        "--csv", str(out_dir / CSV_PREFIX),
        "--csv-full-history",
        "--html", str(out_dir / f"{CSV_PREFIX}_report.html"),
        "--only-summary",
    ]  # fmt: skip
    env = setup.env_with({"RECSYS_LOADTEST_IDS": str(ids_path)})
    return subprocess.run(setup.pinned(command, cores), env=env, check=False).returncode


def run_loadtest(args: argparse.Namespace) -> dict[str, Any]:
    from shared.settings import load_shared_settings
    from zadanie4.evaluation.bench import serving_setup as setup
    from zadanie4.evaluation.bench.load_test_ids import ids_from_events_file, write_ids

    shared = load_shared_settings()
    out_dir: Path = args.out or shared.artifacts_dir / "load_test_results"
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "loadtest.log"
    log_path.write_text("")
    run_time_s = parse_run_time(args.run_time)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    server = None
    env = prepare_own_service_env(out_dir)
    pin = setup.can_pin() and args.host is None
    if args.host is None:
        print("preparing the service (data, model, online store) ...", flush=True)
        ensure_served_artifacts(env, log_path)
    events_path = args.events or shared.default_events_path
    if not events_path.exists():
        raise UserInputError(f"{events_path}: no events file to draw user and product ids from (--events)")
    ids_path = write_ids(ids_from_events_file(events_path), out_dir / "ids.json")
    try:
        if args.host is None:
            server = setup.start_service(env, log_path, cores="0" if pin else None)
            host = server.base_url
            print(f"started recsys serve at {host} in {server.ready_s} s (log {log_path})", flush=True)
        else:
            host = args.host.rstrip("/")
        print(f"locust: {args.users} users, spawn rate {args.spawn_rate}/s, {args.run_time} against {host}", flush=True)
        code = run_locust(
            host,
            out_dir,
            users=args.users,
            spawn_rate=args.spawn_rate,
            run_time=args.run_time,
            ids_path=ids_path,
            cores="1" if pin else None,
        )
    finally:
        if server is not None:
            server.stop()
    stats_path = out_dir / f"{CSV_PREFIX}_stats.csv"
    if not stats_path.exists():
        raise UserInputError(f"locust wrote no statistics (exit code {code}); see its output above")
    summary = {
        "run": run_stamp(),
        "host": host,
        "service": "started by make loadtest" if server is not None else "given with --host",
        "started_at": started_at,
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "run_time_s": run_time_s,
        "pinning": "service core 0, locust core 1" if pin else "none",
        **summary_from_locust_rows(read_stats_csv(stats_path)),
        "reports": {
            "stats_csv": stats_path.name,
            "history_csv": f"{CSV_PREFIX}_stats_history.csv",
            "failures_csv": f"{CSV_PREFIX}_failures.csv",
            "html": f"{CSV_PREFIX}_report.html",
        },
    }
    (out_dir / "test_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    print(f"wrote {out_dir / 'test_summary.json'} and the locust CSV/HTML reports in {out_dir}")
    return summary


def print_summary(summary: Mapping[str, Any]) -> None:
    head = ("request type", "requests", "failures", "rps", "p50", "p95", "p99", "max")
    print("{:28s} {:>9s} {:>9s} {:>7s} {:>6s} {:>6s} {:>6s} {:>7s}".format(*head))
    rows = [*summary["per_request_type"].items(), ("overall", summary["overall"])]
    for name, s in rows:
        print(
            f"{name:28s} {s['requests']:9d} {s['failures']:9d} {s['rps']:7.1f} {s['p50_ms'] or 0:6.0f} "
            f"{s['p95_ms'] or 0:6.0f} {s['p99_ms'] or 0:6.0f} {s['max_ms'] or 0:7.0f}"
        )
    print("(latencies in ms, as locust reports them)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m zadanie4.evaluation.bench.loadtest_runner", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("LOADTEST_HOST") or None,
        help="base URL of a running service; default: start one",
    )
    parser.add_argument("--users", type=int, default=50, help="concurrent simulated visitors (locust -u)")
    parser.add_argument("--spawn-rate", type=float, default=10.0, help="visitors started per second (locust -r)")
    parser.add_argument("--run-time", default="60s", help="duration (locust -t), e.g. 60s, 2m")
    parser.add_argument("--out", type=Path, default=None, help="output folder; default artifacts/load_test_results")
    parser.add_argument(
        "--events", type=Path, default=None, help="events the ids are drawn from; default data/events.parquet"
    )
    args = parser.parse_args(argv)
    try:
        parse_run_time(args.run_time)
    except ValueError as exc:
        parser.error(str(exc))
    if args.users < 1 or args.spawn_rate <= 0:
        parser.error("--users must be >= 1 and --spawn-rate > 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    try:
        run_loadtest(parse_args(argv))
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
