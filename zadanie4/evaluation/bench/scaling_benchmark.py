"""How ``/recommend`` scales: p99 vs candidates scored (100, 500, 2000) and vs catalogue size (10 k, 100 k).

Each row is a fresh ``recsys serve`` (pinned like the serving benchmark) measured for startup time
(process start -> ``/health/ready`` 200), resident memory after start and after the load, and the
latency of warm users' ``GET /recommend?k=10`` at a fixed open-loop rate. Bigger catalogues are
generated with ``recsys data generate --products N`` (same users, days and seed as the default
data), trained and materialized into their own Feast project in the bench's Redis database; the
generated data and model are cached under ``artifacts/bench/catalogues/`` for the next run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zadanie4.evaluation.bench import serving_setup as setup
from zadanie4.evaluation.bench.latency_summary import markdown_table
from zadanie4.evaluation.bench.open_loop_load import run_closed_loop, run_open_loop

# Generator settings shared with the default data (`recsys data generate` defaults) except products.
DEFAULT_GENERATOR = {"users": 3000, "days": 28, "seed": 42}


@dataclass(frozen=True)
class Catalogue:
    """A generated shop of ``products`` products, its files and its environment."""

    products: int
    root: Path
    env: dict[str, str]

    @property
    def events_path(self) -> Path:
        return self.root / "data" / "events.parquet"

    @property
    def train_dir(self) -> Path:
        return self.root / "artifacts" / "train"


def catalogue_env(base: Mapping[str, str], root: Path, products: int, redis_url: str) -> dict[str, str]:
    """Environment that points every part at the catalogue's folders and its own Feast project."""
    return setup.env_with(
        {
            "RECSYS_DATA_DIR": str(root / "data"),
            "RECSYS_ARTIFACTS_DIR": str(root / "artifacts"),
            "MLFLOW_TRACKING_URI": None,  # registry under the catalogue's artifacts: none -> its local ranker
            "RECSYS_FEATURES_PROJECT": f"bench_p{products}",
        },
        base,
    ) | {"REDIS_URL": redis_url, "RECSYS_FEATURES_REDIS_URL": redis_url, "RECSYS_SERVE_REDIS_URL": redis_url}


def prepare_catalogue(
    products: int, root: Path, base_env: Mapping[str, str], redis_url: str, log_path: Path
) -> Catalogue:
    """Generate (cached), train (cached) and materialize (always: the bench flushes its db) one catalogue."""
    stamp = root / "generator.json"
    wanted = {"products": products, **DEFAULT_GENERATOR}
    if not stamp.exists() or json.loads(stamp.read_text()) != wanted:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    catalogue = Catalogue(products, root, catalogue_env(base_env, root, products, redis_url))
    args = [f"--{name}={value}" for name, value in wanted.items()]
    setup.ensure_events(catalogue.events_path, catalogue.env, log_path, generate_args=args)
    stamp.write_text(json.dumps(wanted))
    setup.ensure_trained(catalogue.events_path, catalogue.train_dir, catalogue.env, log_path)
    setup.materialize_store(catalogue.env, log_path, f"materialize {products:,}-product catalogue into Redis")
    return catalogue


def measure_service(
    label: str,
    env: Mapping[str, str],
    user_ids: Sequence[int],
    *,
    log_path: Path,
    cores: str | None,
    rates: Sequence[float],
    duration_s: float,
    warmup_s: float,
    timeout_s: float,
    max_step_s: float,
    max_concurrency: int,
    redis_pid: int | None = None,
    k: int = 10,
) -> dict[str, Any]:
    """Start the service with ``env``; startup time, memory, /recommend latency at each rate and max rps; stop it.

    Keys per rate ``r``: ``p50_ms@r``, ``p99_ms@r``, ``errors@r``, ``cpu_ms@r`` (server CPU per request);
    ``max_rps`` comes from a closed-loop step with ``max_concurrency`` connections.
    """
    server = setup.start_service(env, log_path, cores=cores)
    try:
        rss_ready = server.rss_mib()
        model = setup.get_json(server.base_url + "/model")
        specs = setup.recommend_specs(server.base_url, user_ids, k)
        run_open_loop(specs, 100.0, warmup_s, timeout_s=timeout_s)
        row: dict[str, Any] = {
            "label": label,
            "startup_s": server.ready_s,
            "scorer": server.info.get("scorer"),
            "scorer_wait_s": server.info.get("scorer_wait_s"),
            "rss_ready_mib": rss_ready,
            "products_cached": model.get("products_cached") if isinstance(model, dict) else None,
        }
        flagged, noise = False, []
        for rate in rates:
            with setup.StepMeter(server, redis_pid) as meter:
                summary = run_open_loop(specs, rate, duration_s, timeout_s=timeout_s).summary()
            tag = f"{rate:g}"
            row[f"p50_ms@{tag}"] = summary["p50_ms"]
            row[f"p99_ms@{tag}"] = summary["p99_ms"]
            row[f"errors@{tag}"] = summary["errors"]
            row[f"cpu_ms@{tag}"] = round(meter.server_cpu_s * 1000 / max(summary["requests"], 1), 3)
            row[f"degraded@{tag}"] = sum(n for s, n in summary["status_counts"].items() if s.endswith(" degraded"))
            flagged = flagged or bool(summary["generator_saturated"])
            noise += [f"@{tag}/s: {reason}" for reason in meter.interference.reasons]
        closed = run_closed_loop(specs, max_concurrency, max_step_s, timeout_s=timeout_s).summary()
        degraded = sum(n for s, n in closed["status_counts"].items() if s.endswith(" degraded"))
        # Degraded answers skip the scoring: they must not inflate the capacity.
        row["max_rps"] = round(closed["achieved_rps"] * (1 - degraded / max(closed["requests"], 1)), 2)
        row["degraded@max"] = degraded
        row["rss_after_load_mib"] = server.rss_mib()
        row["generator_saturated"] = flagged
        row["noise"] = noise
        return row
    finally:
        server.stop()


def scaling_markdown(payload: Mapping[str, Any]) -> str:
    """``scaling.md``: the two tables and how they were measured."""
    conditions = payload["conditions"]
    rates = [f"{r:g}" for r in conditions["rates_rps"]]
    latency = [f"{m}@{r}" for r in rates for m in ("p50_ms", "p99_ms")]
    columns_c = ["candidates", *latency, *(f"cpu_ms@{r}" for r in rates), "max_rps", "rss_after_load_mib", "startup_s"]
    columns_p = [
        "catalogue_products",
        "products_cached",
        "startup_s",
        "rss_ready_mib",
        "rss_after_load_mib",
        *latency,
        "max_rps",
    ]
    lines = [
        "# /recommend scaling",
        "",
        f"Warm users, `GET /recommend?k=10`, open loop at {' and '.join(rates)} requests/s for "
        f"{conditions['duration_s']:g} s each, then a closed-loop step ({conditions['max_concurrency']} connections, "
        f"{conditions['max_step_s']:g} s) for `max_rps`; {conditions['pinning']}. Each row is a freshly started "
        "`recsys serve`: startup = process start -> /health/ready 200; memory = resident set of the service "
        "(MiB); `cpu_ms@r` = service CPU per request at rate r; `x@r` = x at r requests/s. Latency in ms, measured "
        "from the scheduled send time.",
        "",
        "## vs candidates scored per request (default catalogue)",
        "",
        markdown_table(payload["candidates"], columns_c),
        "",
        f"## vs catalogue size ({conditions['catalogue_candidates']} candidates; generated with "
        f"{conditions['users']:,} users over {conditions['days']} days, so not every product has events)",
        "",
        markdown_table(payload["catalogue"], columns_p),
        "",
        f"Produced by `{conditions['command']}` on {conditions['started_at']}.",
    ]
    rows = payload["candidates"] + payload["catalogue"]
    flagged = [r["label"] for r in rows if r.get("generator_saturated")]
    if flagged:
        lines += ["", f"**Flagged** (load generator saturated, numbers partly its own): {', '.join(flagged)}"]
    noisy = [f"{r['label']} ({'; '.join(r['noise'])})" for r in rows if r.get("noise")]
    if noisy:
        lines += ["", f"**Noisy** (CPU taken by other processes or the hypervisor): {', '.join(noisy)}"]
    return "\n".join(lines) + "\n"
