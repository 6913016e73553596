"""A failing or slow online store degrades /recommend to popularity (degraded=true) — never a 5xx."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zadanie4.feedback.feedback_log import RedisFeedbackLog
from zadanie4.pipeline.feature_reads import CircuitBreaker, failure_kind
from zadanie4.tests.conftest import make_settings, running_service
from zadanie4.tests.service_fakes import InMemoryFeatureReader, make_dependencies

pytestmark = pytest.mark.anyio
UNREACHABLE_REDIS = "redis://127.0.0.1:1/12"  # nothing listens on port 1: connection refused


def _value(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(name)


async def test_store_errors_serve_popularity_with_degraded_flag_and_metrics(shop, settings):
    reader = InMemoryFeatureReader(shop.tables)
    user = shop.users_with_events(10)[0]
    async with running_service(settings, make_dependencies(shop, reader=reader)) as svc:
        reader.fail = True
        response = await svc.client.get("/recommend", params={"user_id": user, "k": 6})
        metrics = (await svc.client.get("/metrics")).text
    body = response.json()
    assert response.status_code == 200
    assert body["degraded"] is True and body["variant"] == "fallback" and body["model_version"] is None
    assert [i["product_id"] for i in body["items"]] == shop.index.popularity.top(6)
    assert _value(metrics, "recsys_fallbacks_total", {"cause": "store_unavailable"}) == 1
    assert _value(metrics, "recsys_feature_store_errors_total", {"kind": "error"}) == 1
    assert _value(metrics, "recsys_recommendations_total", {"variant": "fallback", "degraded": "true"}) == 1


async def test_slow_store_is_cut_at_the_budget_without_blocking_other_requests(shop, tmp_path):
    settings = make_settings(tmp_path, feature_budget_ms=30.0, breaker_failures=100)
    reader = InMemoryFeatureReader(shop.tables)
    user = shop.users_with_events(10)[0]
    async with running_service(settings, make_dependencies(shop, reader=reader)) as svc:
        reader.delay_s = 1.0
        started = time.perf_counter()
        recommend = asyncio.create_task(svc.client.get("/recommend", params={"user_id": user}))
        await asyncio.sleep(0.005)
        live_started = time.perf_counter()
        live = await svc.client.get("/health/live")
        live_time = time.perf_counter() - live_started
        response = await recommend
        elapsed = time.perf_counter() - started
        metrics = (await svc.client.get("/metrics")).text
    assert live.status_code == 200 and live_time < 0.1  # the event loop did not wait for the store
    assert response.status_code == 200 and response.json()["degraded"] is True
    assert elapsed < 0.3  # budget 30 ms, store 1 s
    assert _value(metrics, "recsys_fallbacks_total", {"cause": "store_timeout"}) == 1
    assert _value(metrics, "recsys_feature_store_errors_total", {"kind": "timeout"}) == 1


async def test_breaker_skips_a_dead_store_then_recovers_when_it_returns(shop, tmp_path):
    settings = make_settings(tmp_path, breaker_failures=3, breaker_cooldown_s=0.3)
    reader = InMemoryFeatureReader(shop.tables)
    user = shop.users_with_events(10)[0]
    async with running_service(settings, make_dependencies(shop, reader=reader)) as svc:
        reader.fail = True
        calls_before = reader.calls
        bodies = [(await svc.client.get("/recommend", params={"user_id": user})).json() for _ in range(20)]
        calls_while_open = reader.calls - calls_before
        model_info = (await svc.client.get("/model")).json()
        reader.fail = False
        await asyncio.sleep(0.35)
        recovered = (await svc.client.get("/recommend", params={"user_id": user})).json()
    assert all(b["degraded"] for b in bodies)
    assert calls_while_open == 3  # the breaker opened after 3 failures; 17 requests never touched the store
    assert model_info["feature_store_breaker_open"] is True
    assert recovered["degraded"] is False and recovered["variant"] == "champion"


def test_breaker_reopens_after_one_failure_once_cooled_down():
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown_s=1.0, clock=lambda: now[0])
    breaker.record_failure()
    assert not breaker.is_open
    breaker.record_failure()
    assert breaker.is_open
    now[0] = 1.5
    assert not breaker.is_open
    breaker.record_failure()
    assert breaker.is_open
    now[0] = 3.0
    breaker.record_success()
    breaker.record_failure()
    assert not breaker.is_open


def test_timeouts_are_told_apart_from_errors():
    class FeatureStoreTimeout(Exception):
        pass

    assert failure_kind(TimeoutError()) == "timeout"
    assert failure_kind(FeatureStoreTimeout()) == "timeout"
    assert failure_kind(ConnectionError()) == "error"


@pytest.mark.redis
async def test_unreachable_redis_degrades_recommendations_and_refuses_feedback_with_503(shop, settings):
    from zadanie2.online_feature_reader import RedisFeatureReader

    redis_reader = RedisFeatureReader(UNREACHABLE_REDIS, "recsys", timeout_s=0.05)
    feedback_log = RedisFeedbackLog.from_url(UNREACHABLE_REDIS, timeout_s=0.2)
    user = shop.users_with_events(10)[0]
    async with running_service(settings, make_dependencies(shop), feedback_log=feedback_log) as svc:
        svc.runtime.features.reader = redis_reader  # Redis goes away after a healthy start
        responses = [await svc.client.get("/recommend", params={"user_id": u}) for u in (user, user + 1, 77)]
        feedback = await svc.client.post(
            "/feedback", json={"event_id": "e1", "user_id": 1, "product_id": 2, "event_type": "click"}
        )
        metrics = (await svc.client.get("/metrics")).text
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert all(r.json()["degraded"] is True for r in responses)
    assert feedback.status_code == 503 and "nothing was stored" in feedback.json()["detail"]
    assert _value(metrics, "recsys_feedback_events_total", {"event_type": "click", "result": "failed"}) == 1


async def test_a_crashing_core_falls_back_instead_of_answering_500(shop, settings):
    deps = make_dependencies(shop)

    def explode(**_kwargs):
        raise KeyError("bad feature row")

    async with running_service(settings, deps) as svc:
        deps.core.recommend = explode  # type: ignore[method-assign]
        response = await svc.client.get("/recommend", params={"user_id": shop.users_with_events(10)[0], "k": 3})
    assert response.status_code == 200 and response.json()["degraded"] is True
    assert len(response.json()["items"]) == 3
