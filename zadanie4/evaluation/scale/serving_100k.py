"""Serving the 100 k-product shop of ``make scale``: /recommend latency, startup and memory.

The subject is what ``recsys run`` produced for the 20 M-event shop (1 M users, 100 k products): its
promoted champion, its candidate index and its online store: the one the run left in the benchmark's
Redis db (``make scale`` materializes there, db 13), or, when that db does not hold it (or with
``--rebuild-store``), its snapshots rebuilt and materialized into that db after flushing it (nothing
else is touched). Then, ``repeats`` times, a fresh
``recsys serve`` (pinned to core 0, the load generator to core 1, as in ``make bench``) is started and
measured with :func:`zadanie4.evaluation.bench.scaling_benchmark.measure_service`: startup (process start ->
/health/ready), resident memory, p50/p99 of warm users' ``GET /recommend?k=10`` at 100 and 300 requests/s
(open loop, from the scheduled send time) and closed-loop capacity. The JSON reports every repeat and the
median and range of each figure, against the goals p99 <= 10 ms at 300 req/s, startup <= 30 s,
memory <= 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.parquet as pq

from shared.errors import UserInputError
from shared.run_stamp import run_stamp
from zadanie4.evaluation.bench import serving_setup as setup
from zadanie4.evaluation.bench.machine_floor import measure_machine_floor
from zadanie4.evaluation.bench.scaling_benchmark import measure_service
from zadanie4.evaluation.bench.serving_benchmark import (
    BENCH_REDIS_URL,
    BenchConfig,
    bench_base_env,
    pick_warm_users,
    profile_service,
)

GOALS = {"p99_ms@300": 10.0, "startup_s": 30.0, "rss_after_load_mib": 2048.0}
FIGURES = ("p50_ms@100", "p99_ms@100", "p50_ms@300", "p99_ms@300", "startup_s", "rss_after_load_mib", "max_rps")


def serving_env(run_dir: Path, store_dir: Path, redis_url: str, project: str = "scale_serving") -> dict[str, str]:
    """The run's data, artifacts and registry, with its features served from the benchmark's Redis db."""
    return setup.env_with(
        {
            "RECSYS_DATA_DIR": str(run_dir / "data"),
            "RECSYS_ARTIFACTS_DIR": str(run_dir / "artifacts"),
            "MLFLOW_TRACKING_URI": None,  # the run's own sqlite registry under its artifacts
            "REDIS_URL": redis_url,
            "RECSYS_FEATURES_REDIS_URL": redis_url,
            "RECSYS_SERVE_REDIS_URL": redis_url,
            "RECSYS_FEATURES_ONLINE_STORE": "redis",
            "RECSYS_FEATURES_PROJECT": project,
            "RECSYS_FEATURES_FEATURES_DIR": str(store_dir.resolve()),
        },
        bench_base_env(),
    )


RUN_PROJECT = "recsys"  # the Feast project `recsys run` uses unless RECSYS_FEATURES_PROJECT says otherwise


def run_store_in_redis(run_dir: Path, redis_url: str) -> bool:
    """Whether the run left its online store in ``redis_url`` (``make scale`` materializes there): its
    materialization report says Redis and the db holds at least as many hashes as its final snapshot."""
    report_path = run_dir / "artifacts" / "features" / "materialization_redis.json"
    if not report_path.exists():
        return False
    import redis

    expected = sum(json.loads(report_path.read_text()).get("rows_in_final_snapshot", {}).values())
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        return bool(expected) and int(client.dbsize()) >= expected
    finally:
        client.close()


def summarise_repeats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median, min and max of each figure over the repeats, and each goal's verdict on the median."""
    figures: dict[str, Any] = {}
    for name in FIGURES:
        values = [float(row[name]) for row in rows if row.get(name) is not None]
        if values:
            figures[name] = {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}
    goals = {
        name: {"goal": limit, "median": figures.get(name, {}).get("median"), "met": _met(figures, name, limit)}
        for name, limit in GOALS.items()
    }
    return {"figures": figures, "goals": goals}


def _met(figures: Mapping[str, Any], name: str, limit: float) -> bool | None:
    median = figures.get(name, {}).get("median")
    return None if median is None else bool(median <= limit)


def profile_requests(env: Mapping[str, str], users: Sequence[int], out_dir: Path, log_path: Path) -> dict[str, Any]:
    """``make bench``'s py-spy breakdown (stages of /recommend, top functions) on a fresh service of this
    shop at 100 requests/s; ``out_dir/profile.txt`` holds the tables."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = BenchConfig(n_candidates=150, profile_load_rps=100.0, profile_s=10.0)
    server = setup.start_service(env, log_path, cores="0")
    try:
        specs = setup.recommend_specs(server.base_url, users, config.k)
        return {"scorer": server.info.get("scorer"), **profile_service(server, specs, config, out_dir, log_path)}
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--run", type=Path, default=Path("artifacts/scale/runs/20m"), help="a `recsys run` folder")
    parser.add_argument("--out", type=Path, default=Path("artifacts/scale/serving_100k.json"))
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL, help="benchmark Redis db (FLUSHED): %(default)s")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=15.0)
    parser.add_argument("--users", type=int, default=500, help="warm users sampled for the requests")
    parser.add_argument(
        "--rebuild-store", action="store_true", help="flush and materialize again though the run's store is there"
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the repeats, py-spy a fresh service at 100 req/s: where a request's CPU goes",
    )
    args = parser.parse_args(argv)
    run_dir: Path = args.run
    if not setup.trained_model_exists(run_dir / "artifacts" / "train"):
        raise UserInputError(f"{run_dir}: no trained run there; run `make scale SIZES=20m` first")
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".log")
    log_path.write_text("")
    materialize_s: float | None = None
    if run_store_in_redis(run_dir, args.redis_url) and not args.rebuild_store:
        # the store `recsys run` left in the benchmark's db, as the run's own service would read it
        env = serving_env(run_dir, run_dir / "artifacts" / "features", args.redis_url, project=RUN_PROJECT)
        store = f"the run's own online store in {args.redis_url}"
    else:
        env = serving_env(run_dir, out.parent / "serving_store", args.redis_url)
        setup.flush_redis_db(args.redis_url)
        materialize_s = setup.materialize_store(env, log_path, f"materialize {run_dir} into {args.redis_url}")
        store = f"snapshots rebuilt and materialized into {args.redis_url}"
    print(f"serving from {store}", flush=True)
    events_path = run_dir / "data" / "events.parquet"
    user_ids = pq.read_table(events_path, columns=["user_id"]).to_pandas()
    users = pick_warm_users(user_ids, args.users, min_events=10, seed=0)
    floor = measure_machine_floor()  # the shared VM's speed varies by day: compare runs by it
    rows = []
    started = time.perf_counter()
    for repeat in range(1, args.repeats + 1):
        row = measure_service(
            f"repeat {repeat}",
            env,
            users,
            log_path=log_path,
            cores="0",
            rates=(100.0, 300.0),
            duration_s=args.duration_s,
            warmup_s=3.0,
            timeout_s=5.0,
            max_step_s=5.0,
            max_concurrency=16,
            redis_pid=setup.redis_server_pid(urlparse(args.redis_url).port or 6379),
        )
        rows.append(row)
        print(
            f"  repeat {repeat}: p99 {row['p99_ms@100']} ms @100/s, {row['p99_ms@300']} ms @300/s; startup "
            f"{row['startup_s']} s; {row['rss_after_load_mib']} MiB; max {row['max_rps']}/s; ranker {row['scorer']} "
            f"(waited {row['scorer_wait_s']} s)",
            flush=True,
        )
    profile = profile_requests(env, users, out.parent / "serving_100k_profile", log_path) if args.profile else None
    payload = {
        "run": run_stamp(),
        "command": "make scale-serving",
        "subject": {
            "run": str(run_dir),
            "events": pq.ParquetFile(events_path).metadata.num_rows,
            "products_cached": rows[0].get("products_cached") if rows else None,
            "store": store,
            "materialize_s": None if materialize_s is None else round(materialize_s, 1),
            # compiled | lightgbm | failed: ... per repeat; the first repeat's wait includes compiling
            # when the run's compiled-ranker cache was empty
            "scorers": [row.get("scorer") for row in rows],
            "scorer_wait_s": [row.get("scorer_wait_s") for row in rows],
        },
        "conditions": {"repeats": args.repeats, "duration_s": args.duration_s, "warm_users": len(users)},
        "machine": {"floor": floor},
        "repeats": rows,
        **summarise_repeats(rows),
        "profile": profile,
        "measure_s": round(time.perf_counter() - started, 1),
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    for name, goal in payload["goals"].items():
        print(f"  {name}: median {goal['median']} (goal <= {goal['goal']:g}) -> {'met' if goal['met'] else 'NOT met'}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
