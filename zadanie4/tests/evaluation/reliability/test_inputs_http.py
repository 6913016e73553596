"""Fast variants of the input scenarios (zadanie4/evaluation/reliability/scenarios_inputs.py) over real HTTP.

The service app (``create_app`` with the in-memory fakes of the service tests) is served by uvicorn in a
thread on loopback, so body limits, chunked uploads and raw bytes go through a real HTTP server.
Assertions are on statuses, counts and state; latency figures are left to ``make reliability``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zadanie4.app import create_app
from zadanie4.evaluation.reliability import scenarios_inputs as si
from zadanie4.evaluation.reliability.harness import InProcessService, http_get, recommend_urls
from zadanie4.settings import load_settings
from zadanie4.tests.service_fakes import InMemoryFeatureReader, Shop, make_dependencies, make_shop

TOKEN = "inputs-test-admin-token"


def _serve(tmp: Path, shop: Shop, reader: Any | None = None, **overrides: Any) -> InProcessService:
    settings = load_settings(
        artifacts_dir=tmp,
        admin_token=TOKEN,
        redis_url=None,
        feedback_sqlite_path=tmp / "feedback.db",
        exploration_share=0.0,
        exploration_seed=1,
        feature_budget_ms=2000.0,
        **overrides,
    )
    app = create_app(settings, dependencies=make_dependencies(shop, reader=reader))
    return InProcessService(app).start()


@pytest.fixture(scope="module")
def inputs_shop() -> Shop:
    return make_shop()


@pytest.fixture(scope="module")
def inputs_service(inputs_shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessService]:
    service = _serve(tmp_path_factory.mktemp("inputs-service"), inputs_shop)
    yield service
    service.stop()


def test_hostile_inputs_get_413_or_422_and_leave_the_service_serving(inputs_service, inputs_shop):
    # Given the service, when every bad input of the scenario is sent twice
    result = si.probe_input_limits(
        inputs_service.url,
        users=inputs_shop.users_with_events(5)[:20],
        repeats=2,
        rss_mb=si.own_rss_mb,
        admin_token=TOKEN,
    )
    # then each got exactly its expected status (413 for the 10 MB bodies, 422 for the rest)
    checks = result.details["checks"]
    assert result.details["wrong_status"] == {}, result.details["wrong_status"]
    assert checks["expected_status"] and checks["still_serving"]
    assert result.non_2xx["413"] == 3 * 2 and result.non_2xx["422"] == (len(si.bad_inputs()) - 3) * 2
    # and the process (this one: the server runs in a thread) did not keep the 10 MB bodies
    assert checks["rss_growth_below_50mb"], result.details["rss_growth_mb"]
    # and the machine's TCP retransmission timeouts over the probe are counted (Linux), to explain outliers
    assert isinstance(result.details["tcp_retransmission_timeouts"], int)
    assert result.details["tcp_retransmission_timeouts"] >= 0
    # and the slowest 10 MB refusal's time is split into sending it and waiting for the answer after
    slowest = result.details["per_case"]["body_10mb_declared"]
    assert slowest["slowest_send_ms"] > 0 and slowest["slowest_wait_ms"] >= 0
    assert slowest["slowest_send_ms"] + slowest["slowest_wait_ms"] <= slowest["max_ms"]


def test_a_body_of_80000_unknown_keys_gets_one_short_error(inputs_service):
    # Given a 0.9 MB object of unknown keys (pydantic alone built 80,000 errors for it: 1-2 s of event loop)
    wide = b"{" + b",".join(b'"k%d": 1' % i for i in range(80_000)) + b"}"
    response = httpx.post(inputs_service.url + "/recommend", content=wide, headers=si.JSON_HEADERS, timeout=30)
    # then the answer is one error naming a few of them
    assert response.status_code == 422
    body = response.json()
    assert len(body["errors"]) == 1
    assert body["detail"].startswith(
        "body: unknown field(s) 'k0', 'k1', 'k2', 'k3', 'k4' (+79995 more); allowed: user_id"
    )


def test_a_typo_in_a_field_name_is_named_in_the_error(inputs_service):
    response = httpx.post(inputs_service.url + "/recommend", json={"usr_id": 5}, timeout=10)
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "body: unknown field(s) 'usr_id'; allowed: user_id, k, session_product_ids, category_id, exclude_product_ids"
    )


def test_every_admin_operation_refuses_every_bad_credential_and_nothing_changes(inputs_service):
    # Given 300 requests spread over the admin operations of the OpenAPI schema and 15 kinds of bad credentials
    result = si.probe_admin_auth(inputs_service.url, TOKEN, total=300)
    # then all were refused with 401/403, the service state is unchanged, and the right token gets through to validation
    assert result.details["checks"] == {
        "all_refused_401_403": True,
        "state_unchanged": True,
        "right_token_accepted": True,
        "server_counted_them": True,
    }
    assert result.details["operations"] == [
        "POST /admin/canary",
        "POST /admin/products",
        "POST /admin/reload",
        "POST /admin/shadow",
    ]
    assert result.requests == 300 and result.non_2xx == {"401": 300}


def test_schemathesis_finds_no_server_error_and_no_schema_violation(inputs_service, tmp_path):
    # Given a short schemathesis run (every check, fixed seed) against the service's OpenAPI schema
    result = si.fuzz_api(inputs_service.url, tmp_path, admin_token=TOKEN, max_examples=5, min_cases=100, timeout_s=120)
    # then it generated its cases and found nothing
    assert result.details["failures"] == [] and result.details["errors"] == []
    assert result.details["checks"]["no_server_errors"] and result.details["checks"]["no_schema_violations"]
    assert result.details["generated_cases"] >= 100
    assert "500" not in result.non_2xx


def test_a_burst_over_capacity_is_shed_with_503_and_the_service_recovers(inputs_shop, tmp_path):
    # Given a service that holds each request ~20 ms in the feature read and admits 8 at a time (~400 req/s)
    reader = InMemoryFeatureReader(inputs_shop.tables, delay_s=0.01)
    service = _serve(tmp_path, inputs_shop, reader=reader, max_concurrency=8)
    try:
        urls = recommend_urls(service.url, inputs_shop.users_with_events(5)[:50])
        # when 5x its measured throughput is offered for 1.5 s on top of a constant load at half of it
        result = si.overload_burst(
            service.url, urls, measure_s=1.0, before_s=0.5, burst_s=1.5, after_s=2.0, measure_concurrency=(8,)
        )
        # and, once the burst is over, the service is asked again one request at a time
        after = _statuses_once_idle(urls[:20])
    finally:
        service.stop()
    checks = result.details["checks"]
    # then part of the excess was refused (nothing else went wrong), the process lives and serves again;
    # how much was refused, how fast, and how soon the load was served in full are figures of
    # `make reliability` (here the load generator shares this process and its GIL with the server)
    assert result.details["shed"] > 0, result.details
    assert checks["every_request_answered_2xx_429_503"], result.details["other_errors"]
    assert checks["process_alive"], result.details
    assert after == [200] * 20
    assert set(result.non_2xx) <= {"429", "503"}


def _statuses_once_idle(urls: list[str], timeout_s: float = 10.0) -> list[int]:
    """Statuses of ``urls`` asked one by one, after the first 200 (waits up to ``timeout_s`` for it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and http_get(urls[0])[0] != 200:
        time.sleep(0.1)
    return [http_get(u)[0] for u in urls]
