"""The monitoring stack against the real service and a real Prometheus: every dashboard query and alert runs.

Starts the recommendation service (zadanie4 ``create_app``: the real middleware, request pipeline, canary
router, shadow scorer, feedback log and metrics, over the in-memory shop of ``zadanie4/tests/service_fakes.py``)
and a Prometheus server (Debian's ``prometheus`` package, installed by ``deploy/scripts/ensure_prometheus.sh``)
with the project's scrape config pointed at 127.0.0.1 and the project's alert rules. Turns canary and shadow on
through the admin API, sends a fixed plan of traffic (warm and cold users, feedback, a short online-store
outage and one failed feedback write), then runs every PromQL expression of the Grafana dashboard and of the
alert rules through Prometheus's HTTP API. A query that does not parse, or a panel that returns no data,
fails the test; so do counts that differ from what the client saw. Also runs promtool's config and rule
checks and the alert rules' unit tests.

Without the ``prometheus`` binary the module is skipped, unless ``CI`` is set: there it fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
import yaml

from zadanie4.app import create_app
from zadanie4.feedback.feedback_log import FeedbackRecord, SqliteFeedbackLog
from zadanie4.observability.prometheus_metrics import create_metrics
from zadanie4.settings import load_settings
from zadanie4.tests.service_fakes import (
    DictModelProvider,
    InMemoryFeatureReader,
    LinearRanker,
    make_dependencies,
    make_shop,
    model,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
SCRAPE_JOB = "recsys"
ADMIN_TOKEN = "observability-test-token"
CANARY_WEIGHT = 0.3
N_PAGE_VIEWS = 240
STORE_OUTAGE = range(100, 130)
"""Page views during which every online-store read fails (then the breaker stays open for its cooldown)."""
FEEDBACK_OUTAGE = 150
"""The page view whose feedback batch cannot be written (the service answers 503, nothing stored)."""

TRAFFIC_PANELS = (
    "p99 latency /recommend (5m)",
    "Request rate by endpoint",
    "Latency p50 / p95 / p99 by variant (/recommend)",
    "Errors (4xx / 5xx)",
    "Degraded share",
    "Responses by variant",
    "Recommended items by reason",
    "Fallbacks by cause",
    "Feature store errors",
    "CTR by variant (15 min window)",
    "Carts and purchases per impression (15 min window)",
    "Feedback events by type and result",
    "Shadow overlap@k",
    "Shadow latency p50 / p99",
    "Shadow requests and queues",
)
"""Panels that must show a positive value once the service has had the planned traffic."""

FAULT_ALERTS = ("RecsysDegradedResponses", "RecsysFeedbackWriteFailures")
"""Alerts whose condition the injected faults meet (they fire once it has held for their ``for:`` time)."""
QUIET_ALERTS = (
    "RecsysServiceDown",
    "RecsysHigh5xxRate",
    "RecsysChampionCtrBelowBaseline",
    "RecsysStaleFeatures",
    "RecsysShadowQueueDropping",
)
"""Alerts whose condition the planned traffic must not meet (the p99 alert is left out: it depends on timing)."""


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
class SwitchableFeedbackLog:
    """The service's SQLite feedback log with a switch that makes writes fail, like a feedback store outage."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self._log = SqliteFeedbackLog(path)
        self.fail = False

    def append(self, records: Sequence[FeedbackRecord]) -> list[bool]:
        if self.fail:
            raise OSError("feedback store unavailable (injected by the test)")
        return self._log.append(records)

    def count(self) -> int:
        return self._log.count()

    def read_all(self, limit: int = 1_000_000) -> list[FeedbackRecord]:
        return self._log.read_all(limit)

    def close(self) -> None:
        self._log.close()


@dataclass(frozen=True)
class ServiceUnderTest:
    """The running service, the ids to send it, and the switches of its injected faults."""

    base_url: str
    warm_user_ids: tuple[int, ...]
    cold_user_ids: tuple[int, ...]
    category_ids: tuple[int, ...]
    product_ids: tuple[int, ...]
    reader: InMemoryFeatureReader
    feedback_log: SwitchableFeedbackLog


@contextlib.contextmanager
def _serve_in_thread(app: Any, port: int) -> Iterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="recsys-service", daemon=True)
    thread.start()
    try:
        _wait_until(lambda: server.started, 20, "the service to start")
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _admin(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def recsys_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceUnderTest]:
    """zadanie4's app served by uvicorn on a free loopback port, with canary and shadow turned on."""
    _binary("prometheus")  # skip (or fail in CI) before starting anything
    workdir = tmp_path_factory.mktemp("service")
    shop = make_shop()
    reader = InMemoryFeatureReader(shop.tables)
    # The challenger is a retrained champion: close weights, so shadow overlap is high but not always 1.
    champion, challenger = LinearRanker(seed=0), LinearRanker(seed=0)
    challenger.weights = champion.weights + np.random.default_rng(1).normal(scale=0.3, size=champion.weights.shape)
    models = DictModelProvider({"champion": model("3", champion), "challenger": model("4", challenger)})
    feedback_log = SwitchableFeedbackLog(workdir / "feedback.db")
    settings = load_settings(
        artifacts_dir=workdir,
        admin_token=ADMIN_TOKEN,
        redis_url=None,
        feedback_sqlite_path=workdir / "feedback.db",
        exploration_share=0.2,  # two of ten slots: the "exploration" reason shows up
        exploration_seed=1,
        load_challenger=True,
        canary_weight=0.0,
        shadow_enabled=False,
        feature_budget_ms=1000.0,  # only the injected outage degrades responses, not a busy test machine
        # a short breaker cooldown ends the degradation with the outage, however fast the machine sends
        # requests: the fallback then serves well under the 1000 impressions the CTR alert compares
        breaker_cooldown_s=0.05,
        realtime_update_interval_s=0.0,
    )
    app = create_app(
        settings, dependencies=make_dependencies(shop, reader=reader, models=models), feedback_log=feedback_log
    )
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with _serve_in_thread(app, port), httpx.Client(base_url=base_url, timeout=10.0) as client:
        _wait_until(lambda: client.get("/health/ready").status_code == 200, 30, "the service to be ready")
        # canary and shadow on, the way an operator turns them on
        canary = client.post("/admin/canary", json={"weight": CANARY_WEIGHT}, headers=_admin())
        assert canary.status_code == 200 and canary.json()["challenger_version"] == "4", canary.text
        shadow = client.post("/admin/shadow", json={"enabled": True}, headers=_admin())
        assert shadow.status_code == 200 and shadow.json()["shadow_enabled"] is True, shadow.text
        unknown = shop.unknown_user()
        yield ServiceUnderTest(
            base_url=base_url,
            warm_user_ids=tuple(shop.users_with_events(5)),
            cold_user_ids=tuple(range(unknown, unknown + 200)),
            category_ids=tuple(int(c) for c in shop.tables.category_stats.index),
            product_ids=tuple(int(p) for p in shop.tables.product_stats.index),
            reader=reader,
            feedback_log=feedback_log,
        )


@dataclass
class Sent:
    """What the client saw: after the last scrape, Prometheus must show the same counts."""

    responses: Counter[str] = field(default_factory=Counter)  # by variant
    degraded: int = 0
    stored: Counter[str] = field(default_factory=Counter)  # by event type
    clicks: Counter[str] = field(default_factory=Counter)  # stored clicks by variant of the recommendation
    duplicates: int = 0
    failed: int = 0

    @property
    def feedback_events(self) -> int:
        return sum(self.stored.values()) + self.duplicates + self.failed


def _event(user_id: int, product_id: int, event_type: str, recommendation_id: str) -> dict[str, Any]:
    """One POST /feedback event (event_id, user_id, product_id, event_type, recommendation_id)."""
    return {
        "event_id": uuid.uuid4().hex,
        "user_id": user_id,
        "product_id": product_id,
        "event_type": event_type,
        "recommendation_id": recommendation_id,
    }


def _send_traffic(service: ServiceUnderTest) -> Sent:
    """A fixed plan of page views, each followed by its feedback batch.

    Three in four page views are from warm users, one from a cold user; every fifth is a category page
    with session products (POST /recommend). Every shown item gets an impression; about one in four a
    click, fewer a cart or a purchase. During ``STORE_OUTAGE`` the online store fails (responses degrade
    to the popularity fallback); the batch of ``FEEDBACK_OUTAGE`` cannot be written. Every tenth view
    also checks health and the model and retries an event (a duplicate); every twentieth sends an
    invalid request (422) and an admin call without the token (401).
    """
    rng = random.Random(11)
    sent = Sent()
    with httpx.Client(base_url=service.base_url, timeout=10.0) as client:
        for n in range(N_PAGE_VIEWS):
            service.reader.fail = n in STORE_OUTAGE
            user_id = rng.choice(service.cold_user_ids if n % 4 == 3 else service.warm_user_ids)
            if n % 5 == 0:
                page = {
                    "user_id": user_id,
                    "k": 10,
                    "category_id": rng.choice(service.category_ids),
                    "session_product_ids": rng.sample(service.product_ids, 3),
                }
                response = client.post("/recommend", json=page)
            else:
                response = client.get("/recommend", params={"user_id": user_id, "k": 10})
            assert response.status_code == 200, response.text
            body = response.json()
            sent.responses[body["variant"]] += 1
            sent.degraded += bool(body["degraded"])

            rec_id = body["recommendation_id"]
            events = [_event(user_id, item["product_id"], "impression", rec_id) for item in body["items"]]
            for item in body["items"]:
                draw = rng.random()
                if draw < 0.25:
                    events.append(_event(user_id, item["product_id"], "click", rec_id))
                if draw < 0.05:
                    events.append(_event(user_id, item["product_id"], "cart", rec_id))
                if draw < 0.02:
                    events.append(_event(user_id, item["product_id"], "purchase", rec_id))
            service.feedback_log.fail = n == FEEDBACK_OUTAGE
            try:
                feedback = client.post("/feedback", json=events)
            finally:
                service.feedback_log.fail = False
            if n == FEEDBACK_OUTAGE:
                assert feedback.status_code == 503, feedback.text
                sent.failed += len(events)
            else:
                assert feedback.status_code == 200, feedback.text
                sent.stored.update(event["event_type"] for event in events)
                sent.clicks[body["variant"]] += sum(event["event_type"] == "click" for event in events)

            if n % 10 == 0:
                assert client.get("/health/ready").status_code == 200
                assert client.get("/model").status_code == 200
                retried = client.post("/feedback", json=events[0])  # a client retry: acknowledged, not stored
                assert retried.status_code == 200 and retried.json()["duplicates"] == (n != FEEDBACK_OUTAGE)
                sent.duplicates += n != FEEDBACK_OUTAGE
                sent.stored["impression"] += n == FEEDBACK_OUTAGE
            if n % 20 == 0:
                assert client.get("/recommend", params={"user_id": user_id, "k": 0}).status_code == 422
                assert client.post("/admin/shadow", json={"enabled": True}).status_code == 401
    service.reader.fail = False
    return sent


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


@dataclass(frozen=True)
class Observed:
    prometheus: PrometheusServer
    sent: Sent


def _scalar(prometheus: PrometheusServer, expr: str) -> float | None:
    values = _values(_query(prometheus, expr))
    return values[0] if len(values) == 1 else None


@pytest.fixture(scope="module")
def observed(recsys_service: ServiceUnderTest, prometheus: PrometheusServer) -> Observed:
    """Prometheus once it has scraped the service before, during and after the planned traffic."""
    # rate() compares scrapes: one scrape must have seen the counters before any traffic
    _wait_until(lambda: _scalar(prometheus, f'up{{job="{SCRAPE_JOB}"}}') == 1.0, 30, "the first scrape")
    sent = _send_traffic(recsys_service)
    # a scrape after the last request shows every count; shadow scoring finishes off the request path
    expected = {
        "sum(recsys_recommendations_total)": float(sum(sent.responses.values())),
        "sum(recsys_feedback_events_total)": float(sent.feedback_events),
    }
    for expr, value in expected.items():
        _wait_until(lambda e=expr, v=value: _scalar(prometheus, e) == v, 20, f"{expr} == {value:g}")
    _wait_until(
        lambda: (_scalar(prometheus, 'sum(recsys_shadow_requests_total{result="scored"})') or 0) > 0,
        20,
        "scored shadow requests",
    )
    time.sleep(2.5)  # a couple more scrapes and rule evaluations (every second) over the final counts
    return Observed(prometheus, sent)


def _query_failures(prometheus: PrometheusServer, queries: Sequence[Any]) -> list[str]:
    """Each dashboard target run over the last minute, as Grafana runs it; a message per broken one."""
    failures = []
    for query in queries:
        expr = query.promql()
        if "$" in expr:
            failures.append(f"{query.panel} [{query.ref_id}]: unknown Grafana variable in {expr!r}")
            continue
        result = _query(prometheus, expr, range_s=60)
        if result.get("status") != "success":
            failures.append(f"{query.panel} [{query.ref_id}]: {result.get('error')} in {expr!r}")
        elif not result["data"]["result"]:
            failures.append(f"{query.panel} [{query.ref_id}]: no data for {expr!r}")
    return failures


# --- tests ---------------------------------------------------------------------------------------
def test_prometheus_scrapes_the_service_with_the_project_config(observed: Observed) -> None:
    targets = httpx.get(f"{observed.prometheus.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    (target,) = [t for t in targets if t["labels"]["job"] == SCRAPE_JOB]
    assert target["health"] == "up", target.get("lastError")
    assert target["labels"]["service"] == "recommender"


def test_prometheus_counts_exactly_what_the_client_saw(observed: Observed) -> None:
    # given the traffic the client sent and the answers it got
    prometheus, sent = observed.prometheus, observed.sent

    def by(label: str, expr: str) -> dict[str, float]:
        result = _query(prometheus, f"sum by ({label}) ({expr})")["data"]["result"]
        return {s["metric"][label]: float(s["value"][1]) for s in result if float(s["value"][1]) > 0}

    # then the scraped counters hold the same numbers
    assert by("variant", "recsys_recommendations_total") == {k: float(v) for k, v in sent.responses.items()}
    assert set(sent.responses) == {"champion", "challenger", "fallback"}, "canary and the outage route every variant"
    assert _scalar(prometheus, 'sum(recsys_recommendations_total{degraded="true"})') == sent.degraded > 0
    assert by("event_type", 'recsys_feedback_events_total{result="stored"}') == {
        k: float(v) for k, v in sent.stored.items()
    }
    assert _scalar(prometheus, 'sum(recsys_feedback_events_total{result="duplicate"})') == sent.duplicates > 0
    assert _scalar(prometheus, 'sum(recsys_feedback_events_total{result="failed"})') == sent.failed > 0
    assert by("variant", "recsys_clicks_total") == {k: float(v) for k, v in sent.clicks.items() if v}


def test_the_service_emits_every_metric_it_declares(observed: Observed) -> None:
    # given every metric family of zadanie4/observability/prometheus_metrics.py
    families = create_metrics().registry.collect()

    # when Prometheus is asked for each after the traffic
    silent = []
    for family in families:
        if family.type == "gauge":  # state: the series must exist
            expr = f"count({family.name})"
        else:  # events: something must have been counted
            expr = f"sum({family.name}_{'count' if family.type == 'histogram' else 'total'})"
        value = _scalar(observed.prometheus, expr)
        if value is None or value <= 0:
            silent.append(f"{family.name} ({family.type}): {expr} = {value}")

    # then none is silent: each one is emitted by the running service, not only declared
    assert not silent, "declared but never emitted:\n" + "\n".join(silent)


def test_every_dashboard_query_runs_and_returns_data(observed: Observed, dashboard_queries: list[Any]) -> None:
    failures = _query_failures(observed.prometheus, dashboard_queries)
    assert not failures, "broken dashboard queries:\n" + "\n".join(failures)


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum by (endpoint) (rate(recsys_requests_total[$__rate_interval])", "parse error"),
        ("sum by (endpoint) (rate(recsys_request_total[$__rate_interval]))", "no data"),  # misspelled metric
        ('sum(rate(recsys_requests_total{endpoint="recomend"}[$__rate_interval]))', "no data"),  # wrong label value
        (
            "histogram_quantile(0.99, sum by (variant) (rate(recsys_request_latency_seconds_bucket[$__rate_interval])))",
            "no data",  # `le` left out of the aggregation
        ),
        ("sum(rate(recsys_requests_total[$__rate_intervl]))", "unknown grafana variable"),
    ],
)
def test_a_broken_dashboard_query_fails_the_check(
    observed: Observed, dashboard_queries: list[Any], expr: str, problem: str
) -> None:
    # given a dashboard target with a typical mistake
    broken = dataclasses.replace(dashboard_queries[0], panel="Broken panel", expr=expr)

    # when the dashboard check runs it
    failures = _query_failures(observed.prometheus, [broken])

    # then it is reported
    assert len(failures) == 1 and failures[0].startswith("Broken panel"), failures
    assert problem in failures[0].lower(), failures


@pytest.mark.parametrize("panel", TRAFFIC_PANELS)
def test_traffic_panels_show_the_traffic(observed: Observed, dashboard_queries: list[Any], panel: str) -> None:
    targets = [query for query in dashboard_queries if query.panel == panel]
    assert targets, f"no dashboard panel titled {panel!r}"
    values = [v for query in targets for v in _values(_query(observed.prometheus, query.promql(), range_s=60))]
    assert any(math.isfinite(v) and v > 0 for v in values), f"{panel}: only zeros/NaN after traffic"


def test_state_panels_show_the_state_of_the_service(observed: Observed, dashboard_queries: list[Any]) -> None:
    def instant(panel: str) -> list[dict[str, Any]]:
        (query,) = [q for q in dashboard_queries if q.panel == panel]
        return _query(observed.prometheus, query.promql())["data"]["result"]

    versions = {(s["metric"]["variant"], s["metric"]["version"]) for s in instant("Model version by variant")}
    assert versions == {("champion", "3"), ("challenger", "4")}
    assert [float(s["value"][1]) for s in instant("Service up")] == [1.0]
    assert [float(s["value"][1]) for s in instant("Canary weight")] == [CANARY_WEIGHT]
    assert [float(s["value"][1]) for s in instant("Shadow scoring")] == [1.0]
    (freshness,) = [float(s["value"][1]) for s in instant("Feature freshness")]
    assert 0.0 <= freshness < 600.0, "product features were loaded at start-up, seconds ago"


def test_every_alert_rule_expression_runs(observed: Observed, alert_rules: list[Any]) -> None:
    failures = []
    for rule in alert_rules:
        result = _query(observed.prometheus, rule.expr)
        if result.get("status") != "success":
            failures.append(f"{rule.name}: {result.get('error')}")
    assert not failures, "broken alert expressions:\n" + "\n".join(failures)


def test_alert_conditions_follow_the_injected_faults(observed: Observed, alert_rules: list[Any]) -> None:
    # given the outage of the online store (degraded responses) and the failed feedback write
    expressions = {rule.name: rule.expr for rule in alert_rules}

    # when the alert expressions are evaluated now
    met = {name: bool(_query(observed.prometheus, expressions[name])["data"]["result"]) for name in expressions}

    # then the faults meet their alerts' conditions and nothing else is alarming
    assert {name: met[name] for name in FAULT_ALERTS} == dict.fromkeys(FAULT_ALERTS, True)
    assert {name: met[name] for name in QUIET_ALERTS} == dict.fromkeys(QUIET_ALERTS, False)


def test_prometheus_evaluates_every_alert_rule_without_error(observed: Observed, alert_rules: list[Any]) -> None:
    def rules_state() -> list[dict[str, Any]]:
        groups = httpx.get(f"{observed.prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    _wait_until(lambda: all(rule["health"] != "unknown" for rule in rules_state()), 15, "a rule evaluation")
    loaded = rules_state()
    assert {rule["name"] for rule in loaded} == {rule.name for rule in alert_rules}
    unhealthy = [(rule["name"], rule.get("lastError")) for rule in loaded if rule["health"] != "ok"]
    assert not unhealthy, unhealthy
    pending = {rule["name"] for rule in loaded if rule.get("state") == "pending"}
    assert set(FAULT_ALERTS) <= pending, "the faults' alerts wait out their `for:` time"


def test_promtool_accepts_the_project_config_and_rules() -> None:
    promtool = _binary("promtool")
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alert_rules.yml"],
        ["test", "rules", "alert_rules.test.yml"],
    ):
        result = subprocess.run([promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
