"""``recsys simulate-ab``: the simulated online A/B test against the real service (issue 8).

Mounted by the root CLI through :mod:`zadanie4.evaluation.cli`. Heavy imports (pandas, httpx, the service) happen
inside the command body so ``recsys --help`` stays fast.
"""

from __future__ import annotations

import json
import shlex
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer


class ControlPolicy(StrEnum):
    popularity = "popularity"
    champion = "champion"


class TreatmentPolicy(StrEnum):
    champion = "champion"
    challenger = "challenger"


def simulate_ab_command(
    days: float = typer.Option(7.0, min=0.05, help="Simulated days of the run (starts where the data ends)."),
    users: int = typer.Option(1500, min=2, help="Simulated shoppers (known users from the data + new ones)."),
    seed: int = typer.Option(42, min=0, help="Seed of every draw (users, sessions, clicks, canary salt)."),
    control: ControlPolicy = typer.Option(ControlPolicy.popularity, help="Control arm."),
    treatment: TreatmentPolicy = typer.Option(TreatmentPolicy.champion, help="Treatment arm."),
    exploration: bool = typer.Option(
        True, "--exploration/--no-exploration", help="New-product exploration slots on/off (own service only)."
    ),
    exploration_max_views: int = typer.Option(
        0,
        min=0,
        help="Own service only: products with at most this many views (in the features) are explored; "
        "0 = only products nobody has seen yet (those announced during the run).",
    ),
    url: str | None = typer.Option(
        None, help="Target a running service (e.g. http://127.0.0.1:8000) instead of starting one."
    ),
    admin_token: str | None = typer.Option(
        None, envvar="RECSYS_SERVE_ADMIN_TOKEN", help="Admin token of the --url service (canary, products)."
    ),
    out: Path | None = typer.Option(None, help="Output folder; default artifacts/ab."),
    compare_with: Path | None = typer.Option(
        None, help="report.json (or its folder) of the same run without exploration: adds the comparison."
    ),
    k: int = typer.Option(10, min=1, max=100, help="Items per recommendation list."),
    concurrency: int = typer.Option(8, min=1, max=64, help="Sessions served concurrently."),
    new_user_share: float = typer.Option(0.15, min=0.0, max=1.0, help="Share of brand-new shoppers."),
    pages_per_session: float = typer.Option(3.0, min=1.0, help="Mean pages (recommendation lists) per session."),
    feedback_log: Path | None = typer.Option(
        None, help="With --url: the service's SQLite feedback log (default: from RECSYS_SERVE_* settings)."
    ),
    canary_salt: str | None = typer.Option(None, help="With --url: the service's canary salt (default: settings)."),
    ground_truth: Path | None = typer.Option(None, help="Ground-truth folder; default data/ground_truth."),
    events: Path | None = typer.Option(None, help="Events the service was built from; default data/events.parquet."),
    ready_timeout: float = typer.Option(180.0, min=5, help="Seconds to wait for the started service."),
) -> None:
    """Simulated A/B test over HTTP: 50/50 canary, ground-truth shoppers, CTR per arm with a z-test."""
    from shared.console import console
    from shared.errors import UserInputError
    from shared.settings import load_shared_settings
    from zadanie4.evaluation.ab.simulation import ArmPlan, SimulationConfig

    shared = load_shared_settings()
    out = out or shared.artifacts_dir / "ab"
    try:
        config = SimulationConfig(
            days=days,
            users=users,
            seed=seed,
            k=k,
            new_user_share=new_user_share,
            pages_per_session_mean=pages_per_session,
        )
        arms = ArmPlan(control.value, treatment.value)
    except ValueError as exc:
        raise UserInputError(str(exc)) from exc
    baseline, baseline_details = _load_baseline(compare_with, config, arms) if compare_with else (None, None)
    command = "recsys " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = run_ab(
        config,
        arms,
        out=out,
        exploration=exploration,
        exploration_max_views=exploration_max_views,
        url=url,
        admin_token=admin_token,
        concurrency=concurrency,
        feedback_log=feedback_log,
        canary_salt=canary_salt,
        ground_truth=ground_truth or shared.ground_truth_dir,
        events=events or shared.default_events_path,
        ready_timeout=ready_timeout,
        baseline=baseline,
        baseline_details=baseline_details,
        command=command,
    )
    report, details = result.report, result.details
    console.print(_summary_text(report, details))
    console.print(f"wrote {out / 'report.json'}, {out / 'report.md'} and {out / 'ctr_over_time.png'}")


def _load_baseline(path: Path, config: Any, arms: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The report (and details, when present) of the run to compare with; the details must describe the
    same simulation (days, users, seed, k, arms), or the CTR change would compare different experiments."""
    from shared.errors import UserInputError

    file = path / "report.json" if path.is_dir() else path
    report = _read_json(file, "run the --no-exploration simulation first")
    details_file = file.with_name("details.json")
    details = _read_json(details_file, "") if details_file.is_file() else None
    if details is not None:
        setup = details.get("setup", {})
        expected = {
            "days": config.days,
            "users": config.users,
            "seed": config.seed,
            "k": config.k,
            "control": arms.control,
            "treatment": arms.treatment,
        }
        differ = [
            f"{key} {setup.get(key)!r} != {value!r}" for key, value in expected.items() if setup.get(key) != value
        ]
        if differ:
            raise UserInputError(f"{file}: not the same simulation ({'; '.join(differ)})")
    return report, details


def _read_json(file: Path, hint: str) -> dict[str, Any]:
    from shared.errors import UserInputError

    if not file.is_file():
        raise UserInputError(f"{file}: no such file" + (f" ({hint})" if hint else ""))
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{file}: not a JSON report ({exc.msg})") from exc


def _summary_text(report: dict[str, Any], details: dict[str, Any]) -> str:
    from zadanie4.evaluation.ab.report import _pct

    arms = report["arms"]
    lines = [
        f"control   {arms['control']['users']:>6,} users {arms['control']['impressions']:>9,} impressions "
        f"{arms['control']['clicks']:>7,} clicks  CTR {arms['control']['ctr']:.3%}",
        f"treatment {arms['treatment']['users']:>6,} users {arms['treatment']['impressions']:>9,} impressions "
        f"{arms['treatment']['clicks']:>7,} clicks  CTR {arms['treatment']['ctr']:.3%}",
        f"lift {_pct(report['lift'], True)}  95% CI [{_pct(report['ci95'][0], True)}, {_pct(report['ci95'][1], True)}]"
        f"  p-value {report['p_value']:.2e}  ({report['test']})"
        if report["p_value"] is not None
        else "lift n/a",
        f"cold users lift {_pct(report['segments']['cold_users']['lift'], True)}, warm users lift "
        f"{_pct(report['segments']['warm_users']['lift'], True)}; new products: "
        f"{report['new_products']['impression_share_first_day']:.2%} of impressions on their first day, "
        f"CTR {report['new_products']['ctr']:.3%}",
        f"counts cross-checked (service log = simulator = /metrics): {details['cross_check']['all_match']}",
    ]
    for name, entry in details.get("targets", {}).items():
        lines.append(f"  target {name}: {entry['value']} -> {'met' if entry['met'] else 'NOT met'}")
    return "\n".join(lines)


def run_ab(
    config: Any,
    arms: Any,
    *,
    out: Path,
    exploration: bool,
    url: str | None,
    admin_token: str | None,
    concurrency: int,
    exploration_max_views: int = 0,
    feedback_log: Path | None,
    canary_salt: str | None,
    ground_truth: Path,
    events: Path,
    ready_timeout: float,
    baseline: dict[str, Any] | None,
    command: str,
    baseline_details: dict[str, Any] | None = None,
) -> Any:
    """Start (or target) the service, play the simulation, read the service's records, write the report."""
    import contextlib
    import shutil
    import time

    from shared.console import step
    from shared.data_generator import GroundTruth
    from shared.errors import UserInputError
    from zadanie4.evaluation.ab.report import write_outputs
    from zadanie4.evaluation.ab.runner import LocalService, analyse, build_plan, prior_event_counts

    started = time.perf_counter()
    try:
        gt = GroundTruth.load(ground_truth)
    except (FileNotFoundError, ValueError) as exc:
        raise UserInputError(str(exc)) from exc
    prior = prior_event_counts(events)
    notes: list[str] = []
    setup: dict[str, Any] = {
        "command": command,
        "control": arms.control,
        "treatment": arms.treatment,
        "days": config.days,
        "users": config.users,
        "seed": config.seed,
        "k": config.k,
        "exploration": exploration,
        "cold_max_events": config.cold_max_events,
        "pages_per_session_mean": config.pages_per_session_mean,
        "new_user_share": config.new_user_share,
        "concurrency": concurrency,
    }
    out.mkdir(parents=True, exist_ok=True)
    if url is None:
        service = LocalService(
            run_dir=out,
            exploration=exploration,
            seed=config.seed,
            exploration_max_views=exploration_max_views,
            champion_alias=arms.champion_alias,
            load_challenger=arms.challenger_source == "registry",
            ready_timeout_s=ready_timeout,
        )
        setup["exploration_max_views"] = exploration_max_views
        with contextlib.ExitStack() as running:  # leaving it stops the service, also on errors
            with step("start the service (isolated copy of the online store)"):
                running.enter_context(service.running())
            plan = build_plan(gt, prior, config, arms, service.salt)
            log = _drive(service.base_url, service.admin_token, gt, plan, concurrency, restore_canary=False)
        notes += service.notes
        service_events = _read_sqlite_log(service.feedback_path, plan)
        setup["service"] = "started by the simulator (recsys serve, 1 worker)"
        notes.append(
            f"service started with feature_budget_ms={service.feature_budget_ms:g} (default 25): the A/B test "
            "measures the policies, not latency (make bench does); with a short budget, stalls of the SQLite "
            "online store while real-time updates write (seconds) open the circuit breaker and serve hundreds of "
            "pages from the popularity fallback, which blurs the arms and the exploration comparison"
        )
        for leftover in ("online_store.db", "realtime_events"):
            target = out / "service" / leftover
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            elif target.exists():
                target.unlink()
        for registry in (out / "service").glob("registry_*.db"):
            registry.unlink()
    else:
        if arms.champion_alias != "champion":
            raise UserInputError(
                "--control popularity --treatment challenger needs a service whose champion is the challenger: "
                "run without --url (the simulator then starts one) or compare --control champion"
            )
        from zadanie4.settings import load_settings as load_serve_settings

        serve_settings = load_serve_settings()
        salt = canary_salt or serve_settings.canary_salt
        plan = build_plan(gt, prior, config, arms, salt)
        log = _drive(url.rstrip("/"), admin_token, gt, plan, concurrency, restore_canary=True)
        setup["service"] = f"running service at {url}"
        notes.append("exploration as configured in the running service (--exploration/--no-exploration not applied)")
        path = feedback_log or (None if serve_settings.redis_url else serve_settings.resolved_feedback_sqlite_path)
        service_events = _read_sqlite_log(path, plan) if path is not None else _read_redis_log(serve_settings, plan)
    setup["champion_version"] = log.service_state.get("champion", {}).get("version")
    setup["challenger_version"] = log.service_state.get("challenger", {}).get("version")
    with step("analyse and write the report"):
        setup["wall_seconds_before_analysis"] = round(time.perf_counter() - started, 1)
        result = analyse(
            plan,
            log,
            service_events,
            setup=setup,
            notes=notes,
            baseline_report=baseline,
            baseline_details=baseline_details,
        )
        write_outputs(out, result.report, result.details, result.series, result.bucket_hours)
    return result


def _drive(
    base_url: str, admin_token: str | None, gt: Any, plan: Any, concurrency: int, *, restore_canary: bool
) -> Any:
    """Run the simulation on an event loop with a progress bar over the sessions."""
    import asyncio

    import httpx
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from shared.console import console
    from shared.errors import UserInputError
    from zadanie4.evaluation.ab.runner import run_simulation
    from zadanie4.evaluation.ab.service_client import ServiceClient, ServiceError

    async def main() -> Any:
        limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
        async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as http:
            client = ServiceClient(http, admin_token)
            columns = (TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
                task = bar.add_task(
                    f"{plan.pages:,} pages in {len(plan.sessions):,} sessions", total=len(plan.sessions)
                )
                return await run_simulation(
                    client,
                    gt,
                    plan,
                    concurrency=concurrency,
                    progress=lambda n: bar.advance(task, n),
                    restore_canary=restore_canary,
                )

    console.print(
        f"simulating {plan.config.days:g} days: {len(plan.users):,} shoppers, {len(plan.sessions):,} sessions, "
        f"{plan.pages:,} pages, {len(plan.releases)} new products ({plan.arms.control} vs {plan.arms.treatment})"
    )
    try:
        return asyncio.run(main())
    except ServiceError as exc:  # the service broke off mid-run: one clear line, not a traceback
        raise UserInputError(f"the A/B run stopped: {exc} (see service/serve.log in the output folder)") from exc


def _read_sqlite_log(path: Path, plan: Any) -> Any:
    from zadanie4.evaluation.ab.runner import read_feedback_log
    from zadanie4.feedback.feedback_log import SqliteFeedbackLog

    if not path.is_file():
        return None
    log = SqliteFeedbackLog(path)
    try:
        return read_feedback_log(log, plan.run_id, plan.start)
    finally:
        log.close()


def _read_redis_log(serve_settings: Any, plan: Any) -> Any:
    from zadanie4.evaluation.ab.runner import read_feedback_log
    from zadanie4.feedback.feedback_log import RedisFeedbackLog

    log = RedisFeedbackLog.from_url(serve_settings.redis_url, stream=serve_settings.feedback_stream)
    try:
        return read_feedback_log(log, plan.run_id, plan.start)
    except Exception:
        return None
    finally:
        log.close()
