"""Drives a simulated A/B test through the service's HTTP API, and reads the service's own records back.

* :func:`build_plan` — the pure schedule (users, sessions, new products) of one run.
* :func:`run_simulation` — plays the schedule against the service: configures the 50/50 canary,
  announces new products at their release time, and for every session page asks ``/recommend``,
  draws the shopper's reactions from the ground truth and posts them to ``/feedback``.
  Sessions run concurrently (``concurrency``), one user's sessions never overlap.
* :func:`read_feedback_log` — this run's events from the service's durable feedback log (SQLite
  file or Redis stream): the service-side source of the per-arm CTR.
* :class:`LocalService` — starts ``recsys serve`` for the run on a free port with isolated state
  (a copy of the SQLite online store, its own feedback log and real-time event log) and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.data_generator import SECOND, GroundTruth
from shared.errors import UserInputError
from zadanie4.evaluation.ab.service_client import ServiceClient, counter_delta
from zadanie4.evaluation.ab.simulation import (
    CANARY_WEIGHT,
    ArmPlan,
    PlannedSession,
    ProductRelease,
    SimulationConfig,
    SimUser,
    choose_users,
    event_offset_ms,
    events_frame,
    feedback_events,
    page_rng,
    parse_event_time,
    plan_sessions,
    product_releases,
    react_to_page,
    routed_arm,
    run_start,
)

MAX_SESSION_CONTEXT = 20
FALLBACKS_METRIC = "recsys_fallbacks_total"  # the service's popularity fallbacks, by cause


@dataclass(frozen=True)
class ExperimentPlan:
    config: SimulationConfig
    arms: ArmPlan
    salt: str
    run_id: str
    start: pd.Timestamp
    users: list[SimUser]
    sessions: list[PlannedSession]
    releases: list[ProductRelease]

    @property
    def pages(self) -> int:
        return sum(s.n_pages for s in self.sessions)


def build_plan(
    gt: GroundTruth,
    prior_events: Mapping[int, int],
    config: SimulationConfig,
    arms: ArmPlan,
    salt: str,
    run_id: str | None = None,
) -> ExperimentPlan:
    """Users, their sessions and the product releases of one run (deterministic for a seed)."""
    rng = np.random.default_rng(config.seed)
    users = choose_users(gt, prior_events, config, rng)
    activity = dict(zip(gt.user_ids.tolist(), gt.user_activity.astype(float).tolist(), strict=True))
    sessions = plan_sessions(users, activity, config, rng)
    return ExperimentPlan(
        config=config,
        arms=arms,
        salt=salt,
        run_id=run_id or f"ab{config.seed}-{secrets.token_hex(3)}",
        start=run_start(gt),
        users=users,
        sessions=sessions,
        releases=product_releases(gt, config),
    )


def prior_event_counts(events_path: Path) -> dict[int, int]:
    """Events per user in the data the service was built from (the users' history before the run)."""
    if not events_path.is_file():
        raise UserInputError(f"{events_path}: no events file (run `recsys data generate` first)")
    if events_path.suffix in (".parquet", ".pq"):
        users = pd.read_parquet(events_path, columns=["user_id"])["user_id"]
    else:
        from shared.event_loader import load_events

        users = load_events(events_path).events["user_id"]
    return {int(u): int(n) for u, n in users.value_counts().items()}


@dataclass
class SimulationLog:
    """What the simulator saw and sent (its own counts, for the cross-check with the service's)."""

    events: pd.DataFrame
    pages: int = 0
    degraded_pages: int = 0
    routing_mismatches: int = 0  # responses whose variant contradicts the user's canary bucket
    variants: Counter[str] = field(default_factory=Counter)
    # segment -> arm -> reason -> [shown, clicked]: which path of the service chose the items, and how they did
    reason_stats: dict[str, dict[str, dict[str, list[int]]]] = field(default_factory=dict)
    announced_products: int = 0
    acknowledged_events: int = 0
    sent_events: int = 0
    wall_seconds: float = 0.0
    service_before: dict[str, Any] = field(default_factory=dict)  # GET /model before the canary was set
    service_state: dict[str, Any] = field(default_factory=dict)  # GET /model with the 50/50 canary on
    counters_delta: dict[str, dict[str, int]] = field(default_factory=dict)
    fallback_causes: dict[str, int] = field(default_factory=dict)  # recsys_fallbacks_total by cause, this run


async def run_simulation(
    client: ServiceClient,
    gt: GroundTruth,
    plan: ExperimentPlan,
    *,
    concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
    restore_canary: bool = False,
) -> SimulationLog:
    """Configure the canary, play every session against the service and collect the simulator's view."""
    config, arms = plan.config, plan.arms
    info = await client.model_info()
    await client.set_canary(CANARY_WEIGHT, arms.challenger_source)
    state = await client.model_info()
    if not state.get("challenger", {}).get("version"):
        raise UserInputError(
            "the service has no challenger to split traffic with "
            f"(challenger slot '{arms.challenger_source}'; for --treatment challenger set the registry alias)"
        )
    counters_before = await client.counters()
    fallbacks_before = await client.metric_samples(FALLBACKS_METRIC, "cause")
    log = SimulationLog(events=events_frame([]), service_before=info, service_state=state)
    rows: list[tuple[int, int, str, str, float]] = []
    locks: dict[int, asyncio.Lock] = {}
    expected_variant = {
        u.user_id: (
            arms.control_variant if routed_arm(arms, u.user_id, plan.salt) == "control" else arms.treatment_variant
        )
        for u in plan.users
    }
    arm_of_user = {u.user_id: routed_arm(arms, u.user_id, plan.salt) for u in plan.users}
    segment_of_user = {u.user_id: u.segment for u in plan.users}
    start_ns = int(plan.start.value)

    async def session(s: PlannedSession) -> None:
        lock = locks.setdefault(s.user_id, asyncio.Lock())
        arm = arm_of_user[s.user_id]
        reason_stats = log.reason_stats.setdefault(segment_of_user[s.user_id], {}).setdefault(arm, {})
        async with lock:
            clicked: list[int] = []
            pending: list[dict[str, Any]] = []
            for page in range(s.n_pages):
                t_s = s.start_s + page * config.page_gap_s
                if t_s >= config.duration_s:
                    break
                context: dict[str, Any] = {}
                if config.page_context and clicked:
                    context = {
                        "session_product_ids": clicked[::-1][:MAX_SESSION_CONTEXT],
                        "category_id": int(gt.product_category_ids([clicked[-1]])[0]),
                        "exclude_product_ids": clicked[-MAX_SESSION_CONTEXT:],
                    }
                response = await client.recommend(s.user_id, config.k, **context)
                items = response.get("items", [])
                ids = [int(item["product_id"]) for item in items]
                variant = str(response.get("variant", ""))
                reaction = react_to_page(
                    gt,
                    s.user_id,
                    ids,
                    start_ns + int(t_s * SECOND),
                    page_rng(config.seed, s.user_id, s.session_index, page),
                )
                events = feedback_events(
                    plan.run_id, s.user_id, s.session_index, page, response.get("recommendation_id"), ids, reaction,
                    plan.start, t_s,
                )  # fmt: skip
                pending += events
                log.pages += 1
                log.variants[variant] += 1
                log.degraded_pages += bool(response.get("degraded"))
                if variant not in (expected_variant[s.user_id], "fallback"):
                    log.routing_mismatches += 1
                for item, was_clicked in zip(items, reaction.clicked.tolist(), strict=True):
                    counts = reason_stats.setdefault(str(item.get("reason", "")), [0, 0])
                    counts[0] += 1
                    counts[1] += int(was_clicked)
                rows.extend(
                    (
                        s.user_id,
                        int(e["product_id"]),  # type: ignore[call-overload]
                        str(e["event_type"]),
                        variant,
                        event_offset_ms(t_s, str(e["event_type"])) / 1000.0,
                    )
                    for e in events
                )
                clicked += [ids[i] for i in np.flatnonzero(reaction.clicked).tolist()]
            # One /feedback per session (the page's events, in order): the shop's client batches its beacons.
            acknowledged = await client.feedback(pending)  # awaited first: += across an await loses updates
            log.acknowledged_events += acknowledged
            log.sent_events += len(pending)

    started = time.perf_counter()
    releases = list(plan.releases)
    slots = asyncio.Semaphore(max(1, concurrency))
    tasks: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []
    done = 0

    def finished(task: asyncio.Task[None]) -> None:
        nonlocal done
        tasks.discard(task)
        slots.release()
        done += 1
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())  # type: ignore[arg-type]
        if progress is not None:
            progress(1)

    try:
        for planned in plan.sessions:
            due = [r for r in releases if r.release_s <= planned.start_s]
            if due:
                releases = releases[len(due) :]
                await client.announce_products(
                    [{"product_id": r.product_id, "category_id": r.category_id, "price": r.price} for r in due]
                )
                log.announced_products += len(due)
            await slots.acquire()
            if failures:
                slots.release()
                break
            task = asyncio.create_task(session(planned))
            tasks.add(task)
            task.add_done_callback(finished)
        if tasks:
            await asyncio.gather(*list(tasks), return_exceptions=True)
        if failures:
            raise failures[0]
        after = await client.counters()
        fallbacks_after = await client.metric_samples(FALLBACKS_METRIC, "cause")
    finally:
        if restore_canary:
            with contextlib.suppress(Exception):
                await client.set_canary(float(info.get("canary_weight", 0.0)), "registry")
    log.counters_delta = counter_delta(counters_before, after)
    causes = counter_delta({FALLBACKS_METRIC: fallbacks_before}, {FALLBACKS_METRIC: fallbacks_after})
    log.fallback_causes = {cause: n for cause, n in causes[FALLBACKS_METRIC].items() if n}
    log.wall_seconds = time.perf_counter() - started
    log.events = events_frame(
        {"user_id": u, "product_id": p, "event_type": e, "variant": v, "t_s": t} for u, p, e, v, t in rows
    )
    return log


# --- the service's own records ----------------------------------------------------------------------


def read_feedback_log(feedback_log: Any, run_id: str, start: pd.Timestamp) -> pd.DataFrame:
    """This run's events from the service's feedback log (``zadanie4.feedback.feedback_log`` reader), with
    the variant the service attributed from the recommendation id and ``t_s`` from its timestamp."""
    prefix = f"{run_id}:"
    records = [r for r in feedback_log.read_all(limit=50_000_000) if r.event_id.startswith(prefix)]
    if not records:
        return events_frame([])
    frame = pd.DataFrame(
        {
            "user_id": [r.user_id for r in records],
            "product_id": [r.product_id for r in records],
            "event_type": [r.event_type for r in records],
            "variant": [r.variant for r in records],
            "timestamp": [r.timestamp for r in records],
        }
    )
    frame["t_s"] = parse_event_time(frame.pop("timestamp"), start)
    return events_frame(frame.to_dict("records"))


# --- a service of our own for the run ---------------------------------------------------------------


@dataclass
class LocalService:
    """``recsys serve`` for one run, with state isolated in ``run_dir`` (see module doc).

    ``env`` overrides are applied on top of the caller's environment; the SQLite online store and its
    Feast registry are copied so the run's real-time feature updates never touch the shared store.
    """

    run_dir: Path
    exploration: bool
    seed: int
    exploration_max_views: int = 0
    champion_alias: str = "champion"
    load_challenger: bool = False
    feature_budget_ms: float = 5000.0
    ready_timeout_s: float = 180.0
    base_url: str = ""
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    salt: str = ""
    notes: list[str] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        from zadanie2.settings import load_settings as load_feature_settings

        features = load_feature_settings()
        paths = features.paths()
        service_dir = self.run_dir / "service"
        if service_dir.exists():
            shutil.rmtree(service_dir)
        service_dir.mkdir(parents=True)
        env = dict(os.environ)
        if features.online_store_kind == "sqlite":
            for name in ("sqlite", "registry"):
                if not paths[name].is_file():
                    raise UserInputError(
                        f"{paths[name]}: no materialized online store (run `recsys features refresh` or `make demo`)"
                    )
            shutil.copy2(paths["sqlite"], service_dir / "online_store.db")
            shutil.copy2(paths["registry"], service_dir / paths["registry"].name)
            env["RECSYS_FEATURES_SQLITE_PATH"] = str(service_dir / "online_store.db")
            env["RECSYS_FEATURES_REGISTRY_PATH"] = str(service_dir / paths["registry"].name)
        else:
            self.notes.append(
                "online store is Redis: the run's real-time feature updates write the simulated users' rows "
                "into that shared store"
            )
        self.salt = f"recsys-ab-{self.seed}"
        env.update(
            {
                "RECSYS_FEATURES_REALTIME_EVENT_LOG_DIR": str(service_dir / "realtime_events"),
                "RECSYS_SERVE_ADMIN_TOKEN": self.admin_token,
                "RECSYS_SERVE_FEEDBACK_SQLITE_PATH": str(service_dir / "feedback.db"),
                "RECSYS_SERVE_CANARY_WEIGHT": "0",
                "RECSYS_SERVE_CANARY_SALT": self.salt,
                "RECSYS_SERVE_CHAMPION_ALIAS": self.champion_alias,
                "RECSYS_SERVE_LOAD_CHALLENGER": "true" if self.load_challenger else "false",
                "RECSYS_SERVE_EXPLORATION_SEED": str(self.seed),
                "RECSYS_SERVE_FEATURE_BUDGET_MS": f"{self.feature_budget_ms:g}",
                "MLFLOW_DISABLE_TELEMETRY": "true",
            }
        )
        # The exploration pool: products with at most this many views in the features. 0 = only products
        # nobody has seen, i.e. those the shop announces during the run (see the README's A/B section).
        env["RECSYS_SERVE_EXPLORATION_MAX_VIEWS"] = str(self.exploration_max_views)
        if not self.exploration:
            env["RECSYS_SERVE_EXPLORATION_SHARE"] = "0"
        # The feedback log is the run's SQLite file, not a shared Redis stream.
        env.pop("RECSYS_SERVE_REDIS_URL", None)
        if "REDIS_URL" in env:
            env["RECSYS_SERVE_REDIS_URL"] = ""
        return env

    @property
    def feedback_path(self) -> Path:
        return self.run_dir / "service" / "feedback.db"

    @contextlib.contextmanager
    def running(self) -> Iterator[LocalService]:
        from zadanie4.evaluation.service_process import HOST, free_port, start_service, stop_service, wait_ready

        env = self.environment()
        port = free_port()
        self.base_url = f"http://{HOST}:{port}"
        process = start_service(port, self.run_dir / "service" / "serve.log", env)
        try:
            try:
                wait_ready(self.base_url, process, self.ready_timeout_s)
            except RuntimeError as exc:
                log_tail = (self.run_dir / "service" / "serve.log").read_text(errors="replace")[-1500:]
                raise UserInputError(
                    f"the service did not start for the A/B run ({exc}); is the pipeline built (`make demo`)? "
                    f"log tail:\n{log_tail}"
                ) from exc
            yield self
        finally:
            stop_service(process)


# --- analysis ---------------------------------------------------------------------------------------


@dataclass
class ExperimentResult:
    report: dict[str, Any]
    details: dict[str, Any]
    series: pd.DataFrame
    bucket_hours: float


def analyse(
    plan: ExperimentPlan,
    log: SimulationLog,
    service_events: pd.DataFrame | None,
    *,
    setup: Mapping[str, Any],
    notes: list[str] | None = None,
    baseline_report: Mapping[str, Any] | None = None,
    baseline_details: Mapping[str, Any] | None = None,
    bucket_hours: float | None = None,
) -> ExperimentResult:
    """The report from the service's events (its feedback log), cross-checked with the simulator's
    counts and the service's /metrics; the simulator's counts stand in only when no log is readable."""
    from zadanie4.evaluation.ab.report import build_report, cross_check, exploration_comparison, user_bootstrap_ci
    from zadanie4.evaluation.ab.simulation import summarize

    hours = bucket_hours or (6.0 if plan.config.days >= 2 else 1.0)
    simulator = summarize(log.events, plan.arms, plan.salt, plan.users, plan.releases, bucket_s=hours * 3600)
    notes = list(notes or [])
    if service_events is not None and len(service_events):
        service = summarize(service_events, plan.arms, plan.salt, plan.users, plan.releases, bucket_s=hours * 3600)
        source = "feedback log"
    else:
        service = simulator
        source = "simulator counts (the service's feedback log was not readable; /metrics cross-checked)"
        notes.append("CTR per arm from the simulator's counts: the service's feedback log was not readable")
    report = build_report(service)
    new = service.new_products
    details: dict[str, Any] = {
        "source": source,
        "setup": dict(setup),
        "run_id": plan.run_id,
        "cross_check": cross_check(service, simulator, log.counters_delta),
        "user_bootstrap_ci95": user_bootstrap_ci(service.per_user, seed=plan.config.seed),
        "arms_funnel": {arm: vars(service.arms[arm]) for arm in service.arms},
        "segments_tests": {},
        "new_products": {
            "products_released": new.products_released,
            "products_shown_first_day": new.products_shown_first_day,
            "first_day_impressions": new.first_day_impressions,
            "first_day_clicks": new.first_day_clicks,
            "impressions_while_fresh": new.impressions_while_fresh,
            "by_arm": {
                arm: {"first_day_impressions": a, "impressions_while_fresh": b} for arm, (a, b) in new.by_arm.items()
            },
        },
        "simulator": {
            "pages": log.pages,
            "sent_events": log.sent_events,
            "acknowledged_events": log.acknowledged_events,
            "degraded_pages": log.degraded_pages,
            "fallback_causes": log.fallback_causes,
            "routing_mismatches": log.routing_mismatches,
            "variants": dict(log.variants),
            "reasons": {
                segment: {
                    arm: {
                        reason: {"impressions": n, "clicks": c, "ctr": c / n if n else 0.0}
                        for reason, (n, c) in sorted(by_reason.items(), key=lambda kv: -kv[1][0])
                    }
                    for arm, by_reason in sorted(by_arm.items())
                }
                for segment, by_arm in sorted(log.reason_stats.items())
            },
            "announced_products": log.announced_products,
            "wall_seconds": log.wall_seconds,
        },
        "metrics_delta": log.counters_delta,
        "notes": notes,
    }
    from zadanie4.evaluation.ab.report import proportion_test

    for segment, arms in service.segments.items():
        test = proportion_test(arms)
        details["segments_tests"][segment] = (
            {"lift": test.lift, "ci95": list(test.ci95), "p_value": test.p_value} if test else None
        )
    if baseline_report is not None:
        details["exploration_comparison"] = exploration_comparison(
            report,
            baseline_report,
            with_variants=details["cross_check"]["variants"],
            without_variants=(baseline_details or {}).get("cross_check", {}).get("variants"),
        )
    details["targets"] = targets(report, details)
    return ExperimentResult(report, _json_safe(details), service.series, hours)


def targets(report: Mapping[str, Any], details: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 8's targets, each with the value reached and whether it is met."""
    lift, p = report["lift"], report["p_value"]
    cold = report["segments"]["cold_users"]["lift"]
    out = {
        "lift >= +10 % with p < 0.01": {
            "value": f"{lift:+.1%}, p={p:.1e}" if lift is not None and p is not None else "n/a",
            "met": bool(lift is not None and p is not None and lift >= 0.10 and p < 0.01),
        },
        "goal: lift >= +20 %": {
            "value": f"{lift:+.1%}" if lift is not None else "n/a",
            "met": bool(lift and lift >= 0.2),
        },
        "cold users: treatment not worse": {
            "value": f"{cold:+.1%}" if cold is not None else "n/a",
            "met": bool(cold is not None and cold >= 0.0),
        },
        "new products >= 5 % of impressions on their first day": {
            "value": f"{report['new_products']['impression_share_first_day']:.2%}",
            "met": report["new_products"]["impression_share_first_day"] >= 0.05,
        },
    }
    comparison = details.get("exploration_comparison")
    if comparison and comparison.get("total_ctr_change") is not None:
        change = comparison["total_ctr_change"]
        ci = comparison.get("total_ctr_change_ci95") or [None, None]
        value = f"{change:+.1%}" + (f" (95 % CI [{ci[0]:+.1%}, {ci[1]:+.1%}])" if None not in ci else "")
        served = comparison.get("served_by_policies", {}).get("total_ctr_change")
        if served is not None:
            value += f"; on the pages the policies served {served:+.1%}"
        out["total CTR drop <= 2 % vs no exploration"] = {"value": value, "met": change >= -0.02}
    return out


def _json_safe(value: Any) -> Any:
    """Replace inf/NaN (not JSON) by None, recursively; numpy scalars to Python."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
