"""``make bench``: the service vs the floor of its HTTP stack vs Feast's own feature server, side by side.

One run, one load generator (:mod:`zadanie4.evaluation.bench.open_loop_load`), the same open-loop rates:

1. Redis-backed serving: flush the bench's Redis database (db 13 by default, nothing else), make sure
   the default data and a trained model exist, build + apply + materialize the default data into it;
2. start ``recsys serve`` and ``feast serve`` (same Feast repo yaml and Redis), both pinned to core 0;
   this process (the load generator) pins itself to core 1;
3. for ``health`` (GET /health/live), ``recommend`` (GET /recommend?user_id=<warm>&k=10, 500 candidates
   scored) and ``feast_feature_server`` (POST /get-online-features: the same user's ``user_stats`` plus
   the ``product_stats`` of the same 500 candidate products): a warm-up, then 100 and 300 requests/s
   and a closed-loop max-throughput step;
4. profile the service under load with py-spy (``artifacts/bench/profile.txt`` + ``profile.svg``);
5. the scaling table (:mod:`zadanie4.evaluation.bench.scaling_benchmark`).

Writes ``artifacts/bench/serving.json`` (the issue's shape), ``serving_details.json`` (everything
else: the run's commit and time, generator health, server CPU per request, status codes, conditions),
``scaling.json``/``.md``,
``profile.txt``/``.svg`` and ``bench.log`` (the servers' and preparation steps' output).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from shared.run_stamp import run_stamp
from zadanie4.evaluation.bench import serving_setup as setup
from zadanie4.evaluation.bench.latency_summary import TARGETS, Interference, run_record, serving_ratios, summarize
from zadanie4.evaluation.bench.open_loop_load import RequestSpec, StepResult, run_closed_loop, run_open_loop

BENCH_REDIS_URL = "redis://127.0.0.1:6379/13"
COMMAND = "make bench"


def _service_stages() -> tuple[Any, ...]:
    """Parts of the service's /recommend path, recognised in py-spy stacks by frame substrings."""
    from zadanie4.evaluation.bench.hot_path_profile import Stage

    handler, reads = "RecommendationService.recommend", "GuardedFeatureReader"
    return (
        Stage("request handler on the event loop (RecommendationService.recommend)", (handler,)),
        Stage("  candidate generation (CandidateIndex.merged)", ("CandidateIndex.merged",)),
        Stage("  feature matrix (feature_matrix + assemble_ranker_matrix)", ("feature_matrix (zadanie1",)),
        Stage("  ranker scoring (RankerArtifact.score: compiled trees or LightGBM)", ("RankerArtifact.score",)),
        Stage("  exploration slots (Thompson sampling)", ("RecommendationService._explore",)),
        Stage("online-store reads: user row + pair rows (feature-read threads)", (reads,)),
        Stage("everything else: HTTP parsing, middlewares, routing, event loop, other threads", (), (handler, reads)),
    )


@dataclass(frozen=True)
class BenchConfig:
    """Knobs of one ``make bench`` run (CLI flags of ``python -m zadanie4.evaluation.bench.serving_benchmark``)."""

    redis_url: str = BENCH_REDIS_URL
    rates: tuple[float, ...] = (100.0, 300.0)
    peer_extra_rates: tuple[float, ...] = (5.0,)  # feast_feature_server only: a rate it sustains
    ratio_rate: float = 300.0
    duration_s: float = 10.0
    warmup_s: float = 2.0
    max_concurrency: int = 16
    timeout_s: float = 5.0
    max_connections: int = 64
    n_candidates: int = 500
    k: int = 10
    n_users: int = 200
    min_user_events: int = 10
    seed: int = 0
    server_cores: str = "0"
    generator_cores: tuple[int, ...] = (1,)
    profile: bool = True
    profile_s: float = 8.0
    profile_load_rps: float = 200.0  # below the service's saturation, so every scheduled request is served
    profile_rate_hz: int = 200
    scaling: bool = True
    candidate_counts: tuple[int, ...] = (100, 500, 2000)
    catalogue_sizes: tuple[int, ...] = (10_000, 100_000)
    scaling_rates: tuple[float, ...] = (100.0, 300.0)
    scaling_duration_s: float = 6.0
    scaling_max_step_s: float = 5.0
    out_dir: Path | None = None  # default <artifacts>/bench


# --- workload (pure) ---------------------------------------------------------------------------------


def pick_warm_users(events: pd.DataFrame, n: int, *, min_events: int, seed: int) -> list[int]:
    """Up to ``n`` users with at least ``min_events`` events, sampled reproducibly (sorted ids, then seed)."""
    counts = events["user_id"].value_counts()
    eligible = np.sort(counts[counts >= min_events].index.to_numpy(dtype=np.int64))
    if len(eligible) == 0:
        return []
    rng = np.random.default_rng(seed)
    chosen = rng.choice(eligible, size=min(n, len(eligible)), replace=False)
    return [int(u) for u in chosen]


def feast_feature_refs() -> list[str]:
    """``user_stats:*`` and ``product_stats:*`` refs, from the shared registry (what the service reads)."""
    from shared.feature_definitions import PRODUCT_STATS, USER_STATS, features_of

    return [f"{view}:{spec.name}" for view in (USER_STATS, PRODUCT_STATS) for spec in features_of(view)]


def feast_request_body(user_id: int, product_ids: Sequence[int], feature_refs: Sequence[str]) -> bytes:
    """``/get-online-features`` body: one entity row per product, each carrying the user (Feast dedupes keys)."""
    ids = [int(p) for p in product_ids]
    body = {"features": list(feature_refs), "entities": {"user_id": [int(user_id)] * len(ids), "product_id": ids}}
    return json.dumps(body, separators=(",", ":")).encode()


# --- preparation (side effects) ---------------------------------------------------------------------


@dataclass
class BenchPaths:
    data_dir: Path
    artifacts_dir: Path
    out_dir: Path

    @property
    def events(self) -> Path:
        return self.data_dir / "events.parquet"

    @property
    def train_dir(self) -> Path:
        return self.artifacts_dir / "train"

    @property
    def store_dir(self) -> Path:
        return self.out_dir / "store"

    @property
    def log(self) -> Path:
        return self.out_dir / "bench.log"


def bench_base_env() -> dict[str, str]:
    """This environment without the feature-store/service/registry knobs the bench sets itself."""
    drop = ("RECSYS_FEATURES_", "RECSYS_SERVE_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    for key in ("REDIS_URL", "MLFLOW_TRACKING_URI"):
        base.pop(key, None)
    return base


def main_store_env(base: Mapping[str, str], paths: BenchPaths, config: BenchConfig) -> dict[str, str]:
    """Default data, Redis online store in the bench db, the bench's own Feast registry, N candidates."""
    url = config.redis_url
    return setup.env_with(
        {
            "REDIS_URL": url,
            "RECSYS_FEATURES_REDIS_URL": url,
            "RECSYS_SERVE_REDIS_URL": url,
            "RECSYS_FEATURES_ONLINE_STORE": "redis",
            # Registry and generated yaml next to the bench's files; offline snapshots shared with `make demo`
            # (the build only rewrites snapshots whose events changed).
            "RECSYS_FEATURES_FEATURES_DIR": str(paths.store_dir.resolve()),
            "RECSYS_FEATURES_OFFLINE_DIR": str((paths.artifacts_dir / "features" / "offline").resolve()),
            "RECSYS_SERVE_N_CANDIDATES": str(config.n_candidates),
        },
        base,
    )


def feature_settings_for(env: Mapping[str, str]) -> Any:
    """zadanie2 settings as the servers will see them (built from ``env``, not this process's environment)."""
    from zadanie2.settings import load_settings

    return load_settings(
        redis_url=env["RECSYS_FEATURES_REDIS_URL"],
        online_store="redis",
        features_dir=Path(env["RECSYS_FEATURES_FEATURES_DIR"]),
        offline_dir=Path(env["RECSYS_FEATURES_OFFLINE_DIR"]),
        project=env.get("RECSYS_FEATURES_PROJECT", "recsys"),
    )


def candidate_lists(
    user_ids: Sequence[int], train_dir: Path, feature_settings: Any, n_candidates: int
) -> dict[int, list[int]]:
    """The candidates the service scores for each warm user (same index, same user row, same call)."""
    from zadanie1.candidate_generation import CandidateIndex
    from zadanie2.online_feature_reader import create_feature_reader

    index = CandidateIndex.load(train_dir / "candidates")
    reader = create_feature_reader(feature_settings)
    out: dict[int, list[int]] = {}
    try:
        for user in user_ids:
            row = reader.read_user(user) or {}
            ids, _ = index.merged(
                [int(p) for p in row.get("user_recent_product_ids") or []],
                [int(c) for c in row.get("user_top_category_ids") or []],
                n_candidates,
                exclude={int(p) for p in row.get("user_purchased_product_ids") or []},
            )
            if len(ids) == n_candidates:
                out[user] = [int(p) for p in ids]
    finally:
        reader.close()
    return out


# --- measuring ---------------------------------------------------------------------------------------


@dataclass
class MeasuredRun:
    target: str
    rate_rps: float | None
    result: StepResult
    server_cpu_s: float  # CPU seconds of the server's process tree during the step (incl. its drain)
    server_wall_s: float  # wall seconds over which server_cpu_s was measured
    noise: Interference | None = None  # CPU taken by other processes / the hypervisor during the step
    record: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.record = run_record(
            self.target, self.rate_rps, summarize(self.result.latencies_s, self.result.errors, self.result.window_s)
        )

    def details(self) -> dict[str, Any]:
        summary = self.result.summary()
        requests = max(int(summary["requests"]), 1)
        return {
            "target": self.target,
            **summary,
            "server_cpu_s": round(self.server_cpu_s, 3),
            "server_cpu_share": round(self.server_cpu_s / self.server_wall_s, 3) if self.server_wall_s else 0.0,
            "server_cpu_ms_per_request": round(self.server_cpu_s * 1000 / requests, 3),
            "degraded_responses": sum(n for s, n in summary["status_counts"].items() if s.endswith(" degraded")),
            "other_processes_cpu_share": self.noise.other_share if self.noise else None,
            "steal_cpu_share": self.noise.steal_share if self.noise else None,
            "noisy": bool(self.noise and self.noise.noisy),
            "noise_warnings": list(self.noise.reasons) if self.noise else [],
        }


def settle(server: setup.ServerProcess, *, max_wait_s: float = 30.0) -> None:
    """Wait until ``server`` answers its cheapest endpoint within 50 ms (work abandoned by timeouts done)."""
    path = "/health" if server.name.startswith("feast") else "/health/live"
    deadline = time.monotonic() + max_wait_s
    time.sleep(0.5)
    while time.monotonic() < deadline:
        started = time.perf_counter()
        with contextlib.suppress(Exception):
            setup.get_json(server.base_url + path, timeout_s=max_wait_s)
        if time.perf_counter() - started < 0.05:
            return
        time.sleep(0.5)


def measure_target(
    target: str,
    specs: Sequence[RequestSpec],
    server: setup.ServerProcess,
    config: BenchConfig,
    redis_pid: int | None = None,
) -> list[MeasuredRun]:
    """Warm-up (not recorded), each open-loop rate, then the closed-loop max-throughput step."""
    # The peer also gets a rate it can sustain (it answers ~10/s at 500 products), so its latency when not
    # overloaded is on record too; ratios use `ratio_rate` only.
    extra = config.peer_extra_rates if target == "feast_feature_server" else ()
    rates: list[float | None] = [*extra, *config.rates, None]
    warmup_rate = min(100.0, *(r for r in rates if r is not None))
    print(f"- {target}: warm-up {config.warmup_s:g} s at {warmup_rate:g}/s", flush=True)
    run_open_loop(
        specs, warmup_rate, config.warmup_s, timeout_s=config.timeout_s, max_connections=config.max_connections
    )
    settle(server)
    runs = []
    for rate in rates:
        with setup.StepMeter(server, redis_pid) as meter:
            if rate is None:
                result = run_closed_loop(specs, config.max_concurrency, config.duration_s, timeout_s=config.timeout_s)
            else:
                result = run_open_loop(
                    specs, rate, config.duration_s, timeout_s=config.timeout_s, max_connections=config.max_connections
                )
        run = MeasuredRun(target, rate, result, meter.server_cpu_s, meter.wall_s, meter.interference)
        runs.append(run)
        _print_run(run)
        settle(server)
    return runs


def _print_run(run: MeasuredRun) -> None:
    d = run.details()
    rate = "max" if run.rate_rps is None else f"{run.rate_rps:g}/s"
    print(
        f"  {run.target:22s} {rate:>7s}: achieved {d['achieved_rps']:8.1f}/s  p50 {d['p50_ms']} ms  "
        f"p95 {d['p95_ms']} ms  p99 {d['p99_ms']} ms  errors {d['errors']}/{d['requests']}  "
        f"server CPU {d['server_cpu_ms_per_request']} ms/req",
        flush=True,
    )
    for warning in d["generator_warnings"]:
        print(f"  WARNING: {warning} -> this step is flagged", flush=True)
    if d["degraded_responses"]:
        print(
            f"  NOTE: {d['degraded_responses']} responses were degraded (popularity fallback, nothing scored)",
            flush=True,
        )
    for warning in d["noise_warnings"]:
        print(f"  NOTE: {warning} during this step (noisy machine; rerun when quiet)", flush=True)


def load_generator_description(
    config: BenchConfig, pinned: bool, flagged: Sequence[str], noisy: Sequence[str] = ()
) -> str:
    """serving.json's ``load_generator``: the tool, its settings, the pinning and any flagged steps."""
    text = (
        "zadanie4.evaluation.bench.open_loop_load: asyncio + aiohttp on uvloop, open loop (latency from the scheduled "
        f"send time, at most {config.max_connections} connections, timeout {config.timeout_s:g} s after the "
        f"due time); max step = closed loop with {config.max_concurrency} connections"
    )
    if pinned:
        text += (
            f"; generator pinned to core {','.join(map(str, config.generator_cores))}, recsys serve and feast serve "
            f"(1 worker each) to core {config.server_cores}, Redis unpinned"
        )
    else:
        text += "; not pinned (taskset missing or < 2 cores)"
    if flagged:
        text += "; FLAGGED (generator saturated): " + ", ".join(flagged)
    if noisy:
        text += "; NOISY (other processes or the hypervisor took CPU): " + ", ".join(noisy)
    return text


# --- profiling ---------------------------------------------------------------------------------------


def profile_service(
    server: setup.ServerProcess, specs: Sequence[RequestSpec], config: BenchConfig, out_dir: Path, log_path: Path
) -> dict[str, Any]:
    """py-spy (GIL view raw + flame graph, all-threads raw) while /recommend runs at ``profile_load_rps``.

    py-spy samples without stopping the process (``--nonblocking``): its blocking mode pauses the
    service at every sample, which multiplied its latency on this machine.
    """
    from zadanie4.evaluation.bench import hot_path_profile as hp

    try:
        py_spy = setup.executable("py-spy")
    except Exception as exc:
        print(f"  WARNING: profile skipped: {exc}", flush=True)
        return {"skipped": str(exc)}
    record_s = config.profile_s + 2.0
    rate = config.profile_rate_hz
    outputs = {
        "gil": out_dir / "profile_gil.raw.txt",
        "cpu": out_dir / "profile_cpu.raw.txt",
        "svg": out_dir / "profile.svg",
    }
    common = [
        py_spy,
        "record",
        "--pid",
        str(server.pid),
        "--duration",
        f"{record_s:.0f}",
        "--rate",
        str(rate),
        "--nonblocking",
    ]
    commands = {
        "gil": [*common, "--gil", "--format", "raw", "--output", str(outputs["gil"])],
        "cpu": [*common, "--format", "raw", "--output", str(outputs["cpu"])],
        "svg": [*common, "--gil", "--format", "flamegraph", "--output", str(outputs["svg"])],
    }
    gen_cores = ",".join(map(str, config.generator_cores))
    with log_path.open("a") as log:
        procs = {
            name: subprocess.Popen(setup.pinned(cmd, gen_cores), stdout=log, stderr=subprocess.STDOUT)
            for name, cmd in commands.items()
        }
        time.sleep(1.0)
        cpu0 = server.cpu_s()
        result = run_open_loop(
            specs,
            config.profile_load_rps,
            config.profile_s,
            timeout_s=config.timeout_s,
            max_connections=config.max_connections,
        )
        cpu_s = server.cpu_s() - cpu0
        for proc in procs.values():
            proc.wait(record_s + 30)
    requests = len(result.latencies_s)
    cpu_ms_per_request = cpu_s * 1000 / max(requests, 1)
    summary = result.summary()
    failed = [name for name, proc in procs.items() if proc.returncode != 0 or not outputs[name].exists()]
    if "gil" in failed and "cpu" in failed:
        print(f"  WARNING: py-spy failed ({failed}); see {log_path} (needs ptrace permission)", flush=True)
        return {"skipped": f"py-spy failed: {failed}"}
    recordings = []
    top = {}
    labels = {
        "gil": "GIL holder (--gil: the Python work that serialises requests)",
        "cpu": "all threads on CPU (adds native code without the GIL, e.g. LightGBM, and store-read threads)",
    }
    for name in ("gil", "cpu"):
        if name in failed:
            continue
        stacks = hp.parse_collapsed(outputs[name].read_text().splitlines())
        profile = hp.aggregate(stacks, drop_idle=name == "cpu")
        if name == "gil":  # time the GIL was held: sampling arithmetic (a lower bound: busy samples get dropped)
            ms_per_sample = hp.ms_per_request(1, rate, requests)
            note = f"samples / {rate} Hz / {requests} requests"
        else:  # shares of the service's measured CPU time
            ms_per_sample = cpu_ms_per_request / max(profile.total, 1)
            note = f"shares of the measured {cpu_ms_per_request:.3f} ms of service CPU per request"
        recordings.append(hp.Recording(labels[name], stacks, name == "cpu", ms_per_sample, note))
        top[name] = [
            {"function": f, "ms_per_request": round(n * ms_per_sample, 3)}
            for f, n in profile.self_samples.most_common(8)
        ]
    header = (
        f"py-spy {rate} Hz, nonblocking, on `recsys serve` (pid {server.pid}) while GET /recommend "
        f"(warm users, k={config.k}, {config.n_candidates} candidates) ran open loop at {config.profile_load_rps:g}/s "
        f"for {config.profile_s:g} s: {requests} requests, p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms "
        f"(under the profiler); service CPU {cpu_ms_per_request:.3f} ms per request (from /proc).\n"
        f"Raw stacks: {outputs['gil'].name}, {outputs['cpu'].name}; flame graph (GIL view): {outputs['svg'].name}."
    )
    text = hp.report(recordings, header=header, stages=_service_stages())
    (out_dir / "profile.txt").write_text(text)
    return {
        "requests": requests,
        "service_cpu_ms_per_request": round(cpu_ms_per_request, 3),
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "top_self": top,
        "failed": failed,
    }


# --- the run -----------------------------------------------------------------------------------------


def run_bench(config: BenchConfig) -> dict[str, Any]:
    from shared.settings import load_shared_settings
    from zadanie4.evaluation.bench import scaling_benchmark as scaling
    from zadanie4.evaluation.bench.machine_floor import measure_machine_floor

    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    shared = load_shared_settings()
    out_dir = config.out_dir or shared.artifacts_dir / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = BenchPaths(shared.data_dir, shared.artifacts_dir, out_dir)
    paths.log.write_text(f"make bench {started_at}\n")
    machine_floor = measure_machine_floor()  # before anything is started: the machine alone
    print(f"machine floor: {machine_floor}")
    base = bench_base_env()
    env = main_store_env(base, paths, config)
    timings: dict[str, float] = {}

    print(f"[1/5] prepare Redis-backed serving ({config.redis_url}, flushing only that database)", flush=True)
    setup.flush_redis_db(config.redis_url)
    setup.ensure_events(paths.events, base, paths.log)
    setup.ensure_trained(paths.events, paths.train_dir, base, paths.log)
    timings["materialize_default_s"] = setup.materialize_store(
        env, paths.log, "build + apply + materialize default data"
    )
    catalogues = []
    if config.scaling:
        for products in config.catalogue_sizes:
            root = out_dir / "catalogues" / f"products_{products}"
            catalogues.append(scaling.prepare_catalogue(products, root, base, config.redis_url, paths.log))
    timings["prepare_s"] = round(time.perf_counter() - started, 1)

    print(
        f"[2/5] start recsys serve and feast serve (core {config.server_cores}; generator on core "
        f"{','.join(map(str, config.generator_cores))})",
        flush=True,
    )
    feature_settings = feature_settings_for(env)
    cli_repo = feature_settings.paths()["cli_repo"]
    events = pd.read_parquet(paths.events, columns=["user_id"])
    users = pick_warm_users(events, config.n_users, min_events=config.min_user_events, seed=config.seed)
    candidates = candidate_lists(users, paths.train_dir, feature_settings, config.n_candidates)
    if not candidates:
        raise RuntimeError(f"no warm user has {config.n_candidates} candidates; lower --candidates")
    service = setup.start_service(env, paths.log, cores=config.server_cores)
    feast = None
    previous_affinity = os.sched_getaffinity(0)
    runs: list[MeasuredRun] = []
    profile: dict[str, Any] = {}
    try:
        feast = setup.start_feast_server(cli_repo, env, paths.log, cores=config.server_cores)
        model_info = setup.get_json(service.base_url + "/model")
        print(
            f"  service ready in {service.ready_s} s ({service.rss_mib()} MiB), feast in {feast.ready_s} s "
            f"({feast.rss_mib()} MiB); {len(candidates)} warm users with {config.n_candidates} candidates",
            flush=True,
        )
        refs = feast_feature_refs()
        json_headers = {"content-type": "application/json"}
        specs = {
            "health": [RequestSpec("GET", f"{service.base_url}/health/live")],
            "recommend": setup.recommend_specs(service.base_url, list(candidates), config.k),
            "feast_feature_server": [
                RequestSpec(
                    "POST", f"{feast.base_url}/get-online-features", feast_request_body(u, ids, refs), json_headers
                )
                for u, ids in candidates.items()
            ],
        }
        servers = {"health": service, "recommend": service, "feast_feature_server": feast}
        setup.pin_self(set(config.generator_cores))
        print(
            f"[3/5] measure {', '.join(TARGETS)} at {', '.join(f'{r:g}' for r in config.rates)} requests/s and "
            f"max throughput, {config.duration_s:g} s each",
            flush=True,
        )
        redis_pid = setup.redis_server_pid(urlparse(config.redis_url).port or 6379)
        for target in TARGETS:
            runs += measure_target(target, specs[target], servers[target], config, redis_pid)
        if config.profile:
            print("[4/5] profile the service under load (py-spy)", flush=True)
            profile = profile_service(service, specs["recommend"], config, out_dir, paths.log)
    finally:
        os.sched_setaffinity(0, previous_affinity)
        if feast is not None:
            feast.stop()
        service.stop()

    scaling_payload = None
    if config.scaling:
        print("[5/5] scaling: candidates per request and catalogue size", flush=True)
        setup.pin_self(set(config.generator_cores))
        try:
            scaling_payload = run_scaling(config, env, catalogues, users, paths, started_at)
        finally:
            os.sched_setaffinity(0, previous_affinity)

    pinned = setup.can_pin()
    flagged = [
        f"{r.target}@{'max' if r.rate_rps is None else f'{r.rate_rps:g}'}"
        for r in runs
        if r.result.summary()["generator_saturated"]
    ]
    noisy = [f"{r.target}@{'max' if r.rate_rps is None else f'{r.rate_rps:g}'}" for r in runs if r.details()["noisy"]]
    serving = {
        "cores": os.cpu_count() or 1,
        "load_generator": load_generator_description(config, pinned, flagged, noisy),
        "duration_s": float(config.duration_s),
        "runs": [r.record for r in runs],
        "ratios": serving_ratios([r.record for r in runs], config.ratio_rate),
    }
    (out_dir / "serving.json").write_text(json.dumps(serving, indent=2) + "\n")
    details = {
        "command": COMMAND,
        "run": run_stamp(),  # serving.json keeps exactly the keys: its stamp lives here
        "started_at": started_at,
        "total_s": round(time.perf_counter() - started, 1),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "ratios_at_rate_rps": config.ratio_rate,
        "ratios_by_rate": {f"{rate:g}": serving_ratios([r.record for r in runs], rate) for rate in config.rates},
        "machine": {
            "cores": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "python": sys.version.split()[0],
            "floor": machine_floor,
        },
        "service": {"model": model_info, "startup_s": service.ready_s, "n_candidates": config.n_candidates},
        "feast_server": {
            "startup_s": feast.ready_s if feast else None,
            "feature_refs": feast_feature_refs(),
            "products_per_request": config.n_candidates,
        },
        "warm_users": len(candidates),
        "timings": timings,
        "runs": [r.details() for r in runs],
        "flagged_runs": flagged,
        "noisy_runs": noisy,
        "profile": profile,
    }
    (out_dir / "serving_details.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
    print(json.dumps(serving, indent=2))
    print(
        f"wrote {out_dir}/serving.json, serving_details.json"
        + (", scaling.json, scaling.md" if scaling_payload else "")
        + (", profile.txt" if profile and "skipped" not in profile else "")
        + f" in {details['total_s']:.0f} s",
        flush=True,
    )
    if flagged:
        print(f"WARNING: load generator saturated in {', '.join(flagged)}: those numbers are partly its own")
    if noisy:
        print(f"NOTE: other processes or the hypervisor took CPU during {', '.join(noisy)}: rerun on a quiet machine")
    return serving


def run_scaling(
    config: BenchConfig,
    env: Mapping[str, str],
    catalogues: Sequence[Any],
    users: Sequence[int],
    paths: BenchPaths,
    started_at: str,
) -> dict[str, Any]:
    from zadanie4.evaluation.bench import scaling_benchmark as scaling

    common: dict[str, Any] = {
        "log_path": paths.log,
        "cores": config.server_cores,
        "rates": config.scaling_rates,
        "duration_s": config.scaling_duration_s,
        "warmup_s": config.warmup_s,
        "timeout_s": config.timeout_s,
        "max_step_s": config.scaling_max_step_s,
        "max_concurrency": config.max_concurrency,
        "redis_pid": setup.redis_server_pid(urlparse(config.redis_url).port or 6379),
    }
    rows_c = []
    for n in config.candidate_counts:
        row = scaling.measure_service(f"candidates={n}", {**env, "RECSYS_SERVE_N_CANDIDATES": str(n)}, users, **common)
        rows_c.append({"candidates": n, **row})
        print(
            f"  candidates {n:>5}: "
            + "  ".join(
                f"@{r:g}/s p50 {row[f'p50_ms@{r:g}']} p99 {row[f'p99_ms@{r:g}']} ms" for r in config.scaling_rates
            )
            + f"  max {row['max_rps']}/s  startup {row['startup_s']} s  {row['rss_after_load_mib']} MiB",
            flush=True,
        )
    default_products = scaling.DEFAULT_GENERATOR | {"products": 1500}
    reference = next((r for r in rows_c if r["candidates"] == config.n_candidates), None)
    rows_p = []
    if reference:
        rows_p.append({"catalogue_products": default_products["products"], **reference, "label": "default catalogue"})
    for catalogue in catalogues:
        events = pd.read_parquet(catalogue.events_path, columns=["user_id"])
        cat_users = pick_warm_users(events, config.n_users, min_events=config.min_user_events, seed=config.seed)
        cat_env = {**catalogue.env, "RECSYS_SERVE_N_CANDIDATES": str(config.n_candidates)}
        row = scaling.measure_service(f"products={catalogue.products}", cat_env, cat_users, **common)
        rows_p.append({"catalogue_products": catalogue.products, **row})
        print(
            f"  products {catalogue.products:>7,} ({row['products_cached']} with features): "
            + "  ".join(
                f"@{r:g}/s p50 {row[f'p50_ms@{r:g}']} p99 {row[f'p99_ms@{r:g}']} ms" for r in config.scaling_rates
            )
            + f"  max {row['max_rps']}/s  startup {row['startup_s']} s  {row['rss_after_load_mib']} MiB",
            flush=True,
        )
    payload = {
        "conditions": {
            "rates_rps": list(config.scaling_rates),
            "duration_s": config.scaling_duration_s,
            "max_step_s": config.scaling_max_step_s,
            "max_concurrency": config.max_concurrency,
            "started_at": started_at,
            "catalogue_candidates": config.n_candidates,
            "command": COMMAND,
            "pinning": (
                f"service on core {config.server_cores}, generator on core {','.join(map(str, config.generator_cores))}"
            )
            if setup.can_pin()
            else "not pinned",
            "users": scaling.DEFAULT_GENERATOR["users"],
            "days": scaling.DEFAULT_GENERATOR["days"],
        },
        "candidates": rows_c,
        "catalogue": rows_p,
        "run": run_stamp(),
    }
    (paths.out_dir / "scaling.json").write_text(json.dumps(payload, indent=2) + "\n")
    (paths.out_dir / "scaling.md").write_text(scaling.scaling_markdown(payload))
    return payload


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    d = BenchConfig()
    p = argparse.ArgumentParser(
        prog="python -m zadanie4.evaluation.bench.serving_benchmark", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--redis-url", default=d.redis_url, help="bench Redis database (FLUSHED): default %(default)s")
    p.add_argument("--rates", default=",".join(f"{r:g}" for r in d.rates), help="open-loop rates, requests/s")
    p.add_argument("--duration", type=float, default=d.duration_s, help="seconds per step")
    p.add_argument("--max-concurrency", type=int, default=d.max_concurrency, help="connections of the max step")
    p.add_argument("--timeout", type=float, default=d.timeout_s, help="request timeout after its due time, s")
    p.add_argument("--candidates", type=int, default=d.n_candidates, help="candidates scored per request")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    p.add_argument("--no-scaling", action="store_true", help="skip the scaling table (and the big catalogues)")
    p.add_argument("--candidate-counts", default=",".join(map(str, d.candidate_counts)))
    p.add_argument("--catalogue-sizes", default=",".join(map(str, d.catalogue_sizes)))
    p.add_argument("--out", type=Path, default=None, help="output folder; default <artifacts>/bench")
    a = p.parse_args(argv)
    rates = _floats(a.rates)
    return BenchConfig(
        redis_url=a.redis_url,
        rates=rates,
        ratio_rate=300.0 if 300.0 in rates else rates[-1],
        duration_s=a.duration,
        max_concurrency=a.max_concurrency,
        timeout_s=a.timeout,
        n_candidates=a.candidates,
        profile=not a.no_profile,
        scaling=not a.no_scaling,
        candidate_counts=_ints(a.candidate_counts),
        catalogue_sizes=_ints(a.catalogue_sizes),
        out_dir=a.out,
    )


def main(argv: Sequence[str] | None = None) -> None:
    from shared.errors import UserInputError

    try:
        run_bench(parse_args(argv))
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
