"""The monitoring stack against a real Prometheus server: every dashboard query and alert rule runs.

Starts the recommendation service (see ``recsys_service``) and a Prometheus server (Debian's
``prometheus`` package, installed by ``deploy/scripts/ensure_prometheus.sh``) with the project's scrape
config pointed at 127.0.0.1 and the project's alert rules, sends traffic, then runs every PromQL
expression of the Grafana dashboard and of the alert rules through Prometheus's HTTP API. A query that
does not parse, or a traffic panel that returns no data, fails the test. Also runs promtool's config and
rule checks and the alert rules' unit tests.

Without the ``prometheus`` binary the module is skipped, unless ``CI`` is set: there it fails.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
SCRAPE_JOB = "recsys"
TRAFFIC_PANELS = (
    "Request rate by endpoint",
    "Latency p50 / p95 / p99 by variant (/recommend)",
    "Responses by variant",
    "Recommended items by reason",
    "CTR by variant (15 min window)",
    "Feedback events by type and result",
)
"""Panels that must show non-zero values once the service has had traffic."""


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"`{name}` is not installed: run deploy/scripts/ensure_prometheus.sh (Debian package prometheus)"
        if os.environ.get("CI"):
            pytest.fail(reason + " - CI must run the observability test", pytrace=False)
        pytest.skip(reason)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


# --- the service under observation ---------------------------------------------------------------
@dataclass(frozen=True)
class ServiceUnderTest:
    """A running recommendation service and the user ids to send it."""

    base_url: str
    warm_user_ids: tuple[int, ...]
    cold_user_ids: tuple[int, ...]


def _stand_in_app() -> Any:
    """A tiny FastAPI app shaped like zadanie4's API that records ServiceMetrics as the service does.

    Stands in for the real service until ``zadanie4`` is wired in (see ``recsys_service``).
    """
    from zadanie4.prometheus_metrics import create_metrics

    metrics = create_metrics()
    metrics.set_model_info("champion", "3")
    metrics.set_model_info("challenger", "4")
    metrics.set_canary_weight(0.2)
    metrics.set_shadow_enabled(True)
    metrics.set_feature_freshness(12.0)
    variant_of_recommendation: dict[str, str] = {}
    seen_events: set[str] = set()
    rng = random.Random(7)
    counter = itertools.count()
    app = FastAPI()

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[..., Any]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        endpoint = request.url.path.strip("/").split("/")[0]
        if endpoint in ("recommend", "feedback", "health", "model", "admin"):
            variant = response.headers.get("x-variant") if endpoint == "recommend" else None
            metrics.observe_request(endpoint, variant, response.status_code, time.perf_counter() - started)
        return response

    @app.get("/recommend")
    def recommend(user_id: int, k: int = 10) -> Response:
        n = next(counter)
        cold = user_id >= 1_000_000
        degraded = n % 25 == 0
        variant = "fallback" if degraded else ("challenger" if user_id % 5 == 0 else "champion")
        if degraded:
            metrics.count_feature_store_error("timeout")
            metrics.count_fallback("store_timeout")
            reasons = ["cold_start_popular"] * k
        elif cold:
            metrics.count_fallback("unknown_user")
            reasons = ["cold_start_popular"] * (k - 1) + ["exploration"]
        else:
            reasons = ["personalized"] * (k - 2) + ["session_similar", "exploration"]
        metrics.count_recommendation(variant, degraded, reasons)
        if variant == "champion" and n % 2 == 0:
            metrics.observe_shadow(rng.uniform(0.5, 1.0), rng.uniform(0.002, 0.02))
        metrics.set_queue_size("shadow", n % 3)
        recommendation_id = uuid.uuid4().hex
        variant_of_recommendation[recommendation_id] = variant
        items = [{"product_id": 1000 + i, "score": 1.0 / (i + 1), "reason": r} for i, r in enumerate(reasons)]
        body = {
            "recommendation_id": recommendation_id,
            "user_id": user_id,
            "model_version": "3",
            "variant": variant,
            "degraded": degraded,
            "items": items,
        }
        return JSONResponse(body, headers={"x-variant": variant})

    @app.post("/feedback")
    async def feedback(request: Request) -> Response:
        body = await request.json()
        events = body if isinstance(body, list) else [body]
        for event in events:
            duplicate = event["event_id"] in seen_events
            seen_events.add(event["event_id"])
            variant = None if duplicate else variant_of_recommendation.get(event.get("recommendation_id", ""))
            metrics.count_feedback(event["event_type"], "duplicate" if duplicate else "stored", variant)
        return JSONResponse({"stored": len(events)})

    @app.get("/health/ready")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


@contextlib.contextmanager
def _serve_in_thread(app: Any, port: int) -> Iterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="stand-in-service", daemon=True)
    thread.start()
    try:
        _wait_until(lambda: server.started, 20, "the stand-in service to start")
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def recsys_service() -> Iterator[ServiceUnderTest]:
    """The service Prometheus scrapes.

    LEAD: switch this fixture to the real service once zadanie4 serves: after the demo artifacts exist,
    start ``recsys serve --host 127.0.0.1 --port <free port>`` as a subprocess (or
    ``zadanie4.app.create_app(load_settings())`` through ``_serve_in_thread``), wait for
    ``/health/ready``, and pass warm user ids from the generated events and cold ids never seen.
    Today it runs a stand-in app that records the same metrics through ``ServiceMetrics``.
    """
    port = _free_port()
    with _serve_in_thread(_stand_in_app(), port):
        yield ServiceUnderTest(
            base_url=f"http://127.0.0.1:{port}",
            warm_user_ids=tuple(range(1, 200)),
            cold_user_ids=tuple(range(10**9, 10**9 + 200)),
        )


def _feedback_event(user_id: int, product_id: int, event_type: str, recommendation_id: str) -> dict[str, Any]:
    """One POST /feedback body (issue 6: event_id, user_id, product_id, event_type, recommendation_id)."""
    return {
        "event_id": uuid.uuid4().hex,
        "user_id": user_id,
        "product_id": product_id,
        "event_type": event_type,
        "recommendation_id": recommendation_id,
    }


@contextlib.contextmanager
def _traffic(service: ServiceUnderTest, max_seconds: float = 60.0) -> Iterator[dict[str, int]]:
    """Send a realistic mix in the background until the block ends (bounded in time and count).

    Warm and cold users ask for recommendations; every shown item gets an impression and about one in
    four gets a click, attributed by recommendation id and posted as one batch per list; a few health
    checks and a retried (duplicate) event.
    """
    stop = threading.Event()
    sent = {"recommend": 0, "feedback": 0, "errors": 0}
    rng = random.Random(11)

    def run() -> None:
        deadline = time.monotonic() + max_seconds
        with httpx.Client(base_url=service.base_url, timeout=5.0) as client:
            for n in range(100_000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                users = service.cold_user_ids if n % 4 == 3 else service.warm_user_ids
                user_id = rng.choice(users)
                try:
                    response = client.get("/recommend", params={"user_id": user_id, "k": 10})
                    sent["recommend"] += 1
                    if response.status_code != 200:
                        sent["errors"] += 1
                        continue
                    body = response.json()
                    rec_id = body["recommendation_id"]
                    events = [
                        _feedback_event(user_id, item["product_id"], "impression", rec_id) for item in body["items"]
                    ]
                    events += [
                        _feedback_event(user_id, item["product_id"], "click", rec_id)
                        for item in body["items"]
                        if rng.random() < 0.25
                    ]
                    # the batch form of POST /feedback: a list of events
                    sent["feedback"] += len(events)
                    if client.post("/feedback", json=events).status_code >= 300:
                        sent["errors"] += 1
                    if n % 10 == 0:
                        client.get("/health/ready")
                        client.post("/feedback", json=events[0])  # a retried single event: a duplicate
                except httpx.HTTPError:
                    sent["errors"] += 1
                time.sleep(0.01)

    thread = threading.Thread(target=run, name="traffic", daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(timeout=10)


# --- Prometheus ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrometheusServer:
    url: str
    config_file: Path


def _test_config(service_url: str, rules_file: Path) -> dict[str, Any]:
    """The project's prometheus.yml, scraping the test service every second instead of zadanie4:8000."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(rules_file)]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == SCRAPE_JOB]
    for static in job["static_configs"]:
        static["targets"] = [service_url.removeprefix("http://")]
    return config


@pytest.fixture(scope="module")
def prometheus(
    recsys_service: ServiceUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    binary = _binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(_test_config(recsys_service.base_url, PROMETHEUS_DIR / "alert_rules.yml")))
    port = _free_port()
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            _wait_until(
                lambda: process.poll() is None and httpx.get(f"{url}/-/ready", timeout=1).status_code == 200,
                30,
                "Prometheus to become ready",
            )
        except AssertionError as error:
            log.flush()
            raise AssertionError(f"{error}; its log:\n{(workdir / 'prometheus.log').read_text()[-3000:]}") from None
        yield PrometheusServer(url=url, config_file=config_file)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _query(prometheus: PrometheusServer, expr: str, *, range_s: float | None = None) -> dict[str, Any]:
    """Run one PromQL expression (instant, or over the last ``range_s`` seconds like a Grafana panel)."""
    if range_s is None:
        response = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=10)
    else:
        end = time.time()
        params: dict[str, str | float] = {"query": expr, "start": end - range_s, "end": end, "step": "1s"}
        response = httpx.get(f"{prometheus.url}/api/v1/query_range", params=params, timeout=10)
    return response.json()


def _values(result: dict[str, Any]) -> list[float]:
    series = result["data"]["result"]
    if result["data"]["resultType"] == "matrix":
        return [float(value) for s in series for _, value in s["values"]]
    return [float(s["value"][1]) for s in series]


@pytest.fixture(scope="module")
def observed(recsys_service: ServiceUnderTest, prometheus: PrometheusServer) -> Iterator[PrometheusServer]:
    """Prometheus once it has scraped the service under traffic and evaluated every alert rule."""
    with _traffic(recsys_service) as sent:
        # rate() needs two scrapes that saw the counters move; rules need one evaluation with that data
        _wait_until(
            lambda: bool(
                _values(_query(prometheus, f'sum(rate(recsys_recommendations_total{{job="{SCRAPE_JOB}"}}[1m])) > 0'))
            ),
            30,
            "Prometheus to see recommendation traffic",
        )
        _wait_until(
            lambda: bool(_values(_query(prometheus, "sum(rate(recsys_clicks_total[1m])) > 0"))),
            30,
            "Prometheus to see click feedback",
        )
        time.sleep(2.5)  # a couple more scrapes and rule evaluations over the traffic
        assert sent["recommend"] > 0 and sent["errors"] == 0, sent
        yield prometheus


# --- tests ---------------------------------------------------------------------------------------
def test_prometheus_scrapes_the_service_with_the_project_config(observed: PrometheusServer) -> None:
    targets = httpx.get(f"{observed.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    (target,) = [t for t in targets if t["labels"]["job"] == SCRAPE_JOB]
    assert target["health"] == "up", target.get("lastError")
    assert target["labels"]["service"] == "recommender"


def test_every_dashboard_query_runs_and_returns_data(observed: PrometheusServer, dashboard_queries: list[Any]) -> None:
    # given Prometheus after a few seconds of traffic
    failures = []
    for query in dashboard_queries:
        # when each panel target runs over the last minute, as Grafana runs it
        expr = query.promql()
        if "$" in expr:
            failures.append(f"{query.panel} [{query.ref_id}]: unknown Grafana variable in {expr!r}")
            continue
        result = _query(observed, expr, range_s=60)
        # then it parses and returns series
        if result.get("status") != "success":
            failures.append(f"{query.panel} [{query.ref_id}]: {result.get('error')} in {expr!r}")
        elif not result["data"]["result"]:
            failures.append(f"{query.panel} [{query.ref_id}]: no data for {expr!r}")
    assert not failures, "broken dashboard queries:\n" + "\n".join(failures)


@pytest.mark.parametrize("panel", TRAFFIC_PANELS)
def test_traffic_panels_show_the_traffic(observed: PrometheusServer, dashboard_queries: list[Any], panel: str) -> None:
    targets = [query for query in dashboard_queries if query.panel == panel]
    assert targets, f"no dashboard panel titled {panel!r}"
    values = [v for query in targets for v in _values(_query(observed, query.promql(), range_s=60))]
    assert any(math.isfinite(v) and v > 0 for v in values), f"{panel}: only zeros/NaN after traffic"


def test_every_alert_rule_expression_runs(observed: PrometheusServer, alert_rules: list[Any]) -> None:
    failures = []
    for rule in alert_rules:
        result = _query(observed, rule.expr)
        if result.get("status") != "success":
            failures.append(f"{rule.name}: {result.get('error')}")
    assert not failures, "broken alert expressions:\n" + "\n".join(failures)


def test_prometheus_evaluates_every_alert_rule_without_error(
    observed: PrometheusServer, alert_rules: list[Any]
) -> None:
    def rules_state() -> list[dict[str, Any]]:
        groups = httpx.get(f"{observed.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    _wait_until(lambda: all(rule["health"] != "unknown" for rule in rules_state()), 15, "a rule evaluation")
    loaded = rules_state()
    assert {rule["name"] for rule in loaded} == {rule.name for rule in alert_rules}
    unhealthy = [(rule["name"], rule.get("lastError")) for rule in loaded if rule["health"] != "ok"]
    assert not unhealthy, unhealthy


def test_promtool_accepts_the_project_config_and_rules() -> None:
    promtool = _binary("promtool")
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alert_rules.yml"],
        ["test", "rules", "alert_rules.test.yml"],
    ):
        result = subprocess.run([promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
